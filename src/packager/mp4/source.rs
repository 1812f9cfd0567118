//! Positional reads of an ISO/IEC 14496-12 file through small buffers, so
//! that neither a large `moov` nor its sample tables are ever held whole:
//! box headers are found by walking, tables are read front to back.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::packager::error::{Error, FourCc, Result};
use crate::packager::media::MediaSource;

/// Positional reads, from a file or a buffer; shared by the threads that
/// read the tracks of a large file.
pub trait ReadAt: Sync {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    /// See [`MediaSource::will_read`].
    fn will_read(&self, _spans: &[(u64, usize)]) {}
}

/// Any [`MediaSource`].
pub struct Media<'m>(pub &'m dyn MediaSource);

impl ReadAt for Media<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        Ok(self.0.read_exact_at(buf, offset)?)
    }

    fn will_read(&self, spans: &[(u64, usize)]) {
        self.0.will_read(spans)
    }
}

pub struct FileSource<'f> {
    pub file: &'f File,
}

impl ReadAt for FileSource<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        Ok(FileExt::read_exact_at(self.file, buf, offset)?)
    }
}

impl ReadAt for &[u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// A buffer over part of the file, refilled at an aligned position when a
/// read falls outside it. Reads that move forward through the file fill
/// each aligned block at most once.
pub struct Window<'s> {
    src: &'s dyn ReadAt,
    file_len: u64,
    /// Alignment of fills and the longest read [`Window::get`] accepts.
    block: usize,
    buf: Vec<u8>,
    start: u64,
    /// Where its fills may start: 0, or the start of the one box it
    /// reads ([`Window::within`]).
    floor: u64,
    /// Bytes read from the source so far, for callers that bound their I/O.
    pub bytes_read: u64,
}

impl<'s> Window<'s> {
    pub fn new(src: &'s dyn ReadAt, file_len: u64, block: usize) -> Self {
        Window {
            src,
            file_len,
            block,
            buf: Vec::new(),
            start: 0,
            floor: 0,
            bytes_read: 0,
        }
    }

    /// A window that reads only `span` of the file (a box's payload):
    /// its fills stop at the span's ends, so that the tables side by side
    /// in an `stbl`, each read through a window of its own, are not read
    /// once for each of them. A read outside the span is an error.
    pub fn within(src: &'s dyn ReadAt, span: std::ops::Range<u64>, block: usize) -> Self {
        Window {
            floor: span.start,
            ..Window::new(src, span.end, block)
        }
    }

    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The `len` bytes at `pos` (`len` at most the block size).
    pub fn get(&mut self, pos: u64, len: usize, fourcc: FourCc) -> Result<&[u8]> {
        debug_assert!(len <= self.block, "read of {len} bytes through a window");
        let end = pos
            .checked_add(len as u64)
            .filter(|&e| e <= self.file_len && pos >= self.floor);
        let Some(end) = end else {
            return Err(Error::corrupt(
                fourcc,
                pos,
                format!("{len} bytes at {pos} run outside the file (or the box read)"),
            ));
        };
        let held = self.start..self.start + self.buf.len() as u64;
        if pos < held.start || end > held.end {
            let (start, fill) = self.fill_at(pos);
            // A read running on past the end of what is held (a table read
            // a block at a time, from an unaligned start) keeps the held
            // bytes of the new fill and reads only the rest.
            let kept = if held.contains(&start) {
                let kept = (held.end - start) as usize;
                self.buf.copy_within((start - held.start) as usize.., 0);
                kept
            } else {
                0
            };
            self.buf.resize(fill, 0);
            if let Err(e) = self.src.read_at(&mut self.buf[kept..], start + kept as u64) {
                // Nothing half-filled is taken for held bytes later.
                self.buf.clear();
                return Err(e);
            }
            self.start = start;
            self.bytes_read += (fill - kept) as u64;
        }
        let from = (pos - self.start) as usize;
        Ok(&self.buf[from..from + len])
    }

    /// What a read at `pos` outside the buffer fills it with: from the
    /// aligned block holding `pos` (or the window's floor, if later), two
    /// blocks long, so a read of up to one block always fits.
    /// `(offset, len)`.
    pub fn fill_at(&self, pos: u64) -> (u64, usize) {
        let start = (pos - pos % self.block as u64).max(self.floor);
        let len = self
            .file_len
            .saturating_sub(start)
            .min(2 * self.block as u64);
        (start, len as usize)
    }

    /// The `len` bytes at `pos` in a buffer of their own, for a box body we
    /// keep (`len` already bounded by the caller).
    pub fn read_vec(&mut self, pos: u64, len: usize, fourcc: FourCc) -> Result<Vec<u8>> {
        if pos.saturating_add(len as u64) > self.file_len {
            return Err(Error::corrupt(
                fourcc,
                pos,
                "box runs past the end of the file",
            ));
        }
        let mut body = vec![0u8; len];
        self.src.read_at(&mut body, pos)?;
        self.bytes_read += len as u64;
        Ok(body)
    }
}

/// A box found in the file: its type, and where its header and payload are.
#[derive(Clone, Copy, Debug)]
pub struct Located {
    pub fourcc: FourCc,
    pub start: u64,
    /// File offset of the payload.
    pub body: u64,
    /// File offset just after the box.
    pub end: u64,
}

impl Located {
    pub fn body_len(&self) -> u64 {
        self.end - self.body
    }
}

/// Block size of the windows that walk box headers and read tables.
pub const WALK_BLOCK: usize = 64 << 10;

/// The next child box in `[*pos, parent_end)`, advancing `*pos` past it;
/// `None` at the end. A few zero bytes after the last child (some muxers
/// pad containers) end the list; a child that overruns its parent is an
/// error.
pub fn next_child(
    win: &mut Window,
    pos: &mut u64,
    parent_end: u64,
    parent: FourCc,
) -> Result<Option<Located>> {
    let left = parent_end - *pos;
    if left == 0 {
        return Ok(None);
    }
    if left < 8 {
        if win
            .get(*pos, left as usize, parent)?
            .iter()
            .all(|&b| b == 0)
        {
            *pos = parent_end;
            return Ok(None);
        }
        return Err(Error::corrupt(parent, *pos, "truncated box header"));
    }
    let start = *pos;
    let head = win.get(start, left.min(16) as usize, parent)?;
    let size32 = u32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
    let fourcc = FourCc(head[4..8].try_into().expect("4 bytes"));
    let (header, size) = match size32 {
        0 => (8, left),
        1 if left < 16 => return Err(Error::corrupt(fourcc, start, "truncated 64-bit box size")),
        1 => (
            16,
            u64::from_be_bytes(head[8..16].try_into().expect("8 bytes")),
        ),
        n => (8, u64::from(n)),
    };
    if size < header || size > left {
        return Err(Error::corrupt(
            fourcc,
            start,
            format!("box size {size} does not fit in its parent ({left} bytes left)"),
        ));
    }
    *pos = start + size;
    Ok(Some(Located {
        fourcc,
        start,
        body: start + header,
        end: start + size,
    }))
}

/// Reads a box's payload front to back as big-endian numbers, through a
/// window of its own; every read past the payload's end is an error that
/// names the box.
pub struct TableReader<'s> {
    win: Window<'s>,
    pos: u64,
    end: u64,
    fourcc: FourCc,
}

impl<'s> TableReader<'s> {
    pub fn new(src: &'s dyn ReadAt, file_len: u64, table: &Located) -> Self {
        TableReader {
            win: Window::within(src, table.body..table.end.min(file_len), WALK_BLOCK),
            pos: table.body,
            end: table.end,
            fourcc: table.fourcc,
        }
    }

    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    pub fn error(&self, what: impl Into<String>) -> Error {
        Error::corrupt(self.fourcc, self.pos, what)
    }

    pub fn bytes(&mut self, len: usize, what: &str) -> Result<&[u8]> {
        if len as u64 > self.remaining() {
            return Err(self.error(format!(
                "{what}: needs {len} bytes, box has {} left",
                self.remaining()
            )));
        }
        let pos = self.pos;
        self.pos += len as u64;
        self.win.get(pos, len, self.fourcc)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }

    pub fn full_box(&mut self) -> Result<(u8, u32)> {
        let v = self.u32("version and flags")?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }

    /// Calls `f` with each of the next `count` entries of `len` bytes (at
    /// most a block), read a block at a time rather than a number at a
    /// time: tables of a long file have millions of entries. Stops when `f`
    /// returns false.
    pub fn entries(
        &mut self,
        count: u64,
        len: usize,
        what: &str,
        mut f: impl FnMut(&[u8]) -> bool,
    ) -> Result<()> {
        let per_read = (WALK_BLOCK / len).max(1) as u64;
        let mut left = count;
        while left > 0 {
            let n = left.min(per_read);
            for entry in self.bytes(n as usize * len, what)?.chunks_exact(len) {
                if !f(entry) {
                    return Ok(());
                }
            }
            left -= n;
        }
        Ok(())
    }

    /// Reads an entry count and checks that `count * entry_len` bytes follow.
    pub fn count(&mut self, entry_len: u64, what: &str) -> Result<u64> {
        let count = u64::from(self.u32(what)?);
        if count * entry_len > self.remaining() {
            return Err(self.error(format!(
                "{what} {count} needs {} bytes of {entry_len}-byte entries, box has {} left",
                count * entry_len,
                self.remaining()
            )));
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_refills_only_outside_what_it_holds() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let src: &[u8] = &data;
        let mut w = Window::new(&src, 1000, 64);
        assert_eq!(w.get(10, 4, FourCc(*b"test")).unwrap(), &data[10..14]);
        assert_eq!(w.bytes_read, 128);
        assert_eq!(w.get(100, 64, FourCc(*b"test")).unwrap(), &data[100..164]);
        assert_eq!(w.get(127, 1, FourCc(*b"test")).unwrap(), &data[127..128]);
        assert_eq!(
            w.bytes_read, 192,
            "the second fill holds both reads, and reads only its new block"
        );
        assert_eq!(w.get(990, 10, FourCc(*b"test")).unwrap(), &data[990..]);
        assert!(w.get(995, 10, FourCc(*b"test")).is_err());
    }

    #[test]
    fn reads_that_run_on_read_each_byte_once() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let src: &[u8] = &data;
        let mut w = Window::new(&src, 1000, 64);
        // Reads of a block from an unaligned start, as a table is read.
        let mut pos = 10;
        while pos + 64 <= 1000 {
            assert_eq!(
                w.get(pos, 64, FourCc(*b"test")).unwrap(),
                &data[pos as usize..][..64]
            );
            pos += 64;
        }
        assert_eq!(w.bytes_read, 1000, "every byte of the file, once");
        // A step back refills, from the source.
        assert_eq!(w.get(0, 8, FourCc(*b"test")).unwrap(), &data[..8]);
        assert_eq!(w.bytes_read, 1128);
    }

    #[test]
    fn a_window_within_a_box_reads_only_the_box() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let src: &[u8] = &data;
        // Three tables side by side, each through a window of its own.
        let mut read = 0;
        for span in [300..310u64, 310..500, 500..520] {
            let mut w = Window::within(&src, span.clone(), 64);
            let mut pos = span.start;
            while pos < span.end {
                let len = (span.end - pos).min(64) as usize;
                assert_eq!(
                    w.get(pos, len, FourCc(*b"test")).unwrap(),
                    &data[pos as usize..][..len]
                );
                pos += len as u64;
            }
            assert!(w.get(span.end - 1, 2, FourCc(*b"test")).is_err());
            assert!(w.get(span.start - 1, 1, FourCc(*b"test")).is_err());
            read += w.bytes_read;
        }
        assert_eq!(read, 220, "each byte of the three, once");
    }
}
