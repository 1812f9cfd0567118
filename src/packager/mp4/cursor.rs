//! A bounds-checked big-endian reader over the bytes of one box.
//!
//! Every read that runs past the end is an error naming the box and the
//! absolute file offset, so a hostile length can never index out of bounds.

use crate::packager::error::{Error, FourCc, Result};

#[derive(Clone)]
pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    /// File offset of `data[0]`, for error messages.
    base: u64,
    fourcc: FourCc,
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8], base: u64, fourcc: FourCc) -> Self {
        Cursor {
            data,
            pos: 0,
            base,
            fourcc,
        }
    }

    pub fn fourcc(&self) -> FourCc {
        self.fourcc
    }

    /// Absolute file offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn error(&self, what: impl Into<String>) -> Error {
        Error::corrupt(self.fourcc, self.offset(), what)
    }

    pub fn bytes(&mut self, len: usize, what: &str) -> Result<&'a [u8]> {
        if len > self.remaining() {
            return Err(self.error(format!(
                "{what}: needs {len} bytes, box has {} left",
                self.remaining()
            )));
        }
        let out = &self.data[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.data[self.pos..];
        self.pos = self.data.len();
        out
    }

    pub fn skip(&mut self, len: usize, what: &str) -> Result<()> {
        self.bytes(len, what).map(|_| ())
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
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(self.u32(what)? as i32)
    }

    pub fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.bytes(8, what)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    pub fn fourcc_value(&mut self, what: &str) -> Result<FourCc> {
        let b = self.bytes(4, what)?;
        Ok(FourCc(b.try_into().expect("4 bytes")))
    }

    /// Reads the version and flags of a full box (ISO/IEC 14496-12 4.2).
    pub fn full_box(&mut self) -> Result<(u8, u32)> {
        let v = self.u32("version and flags")?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }

    /// A 32-bit value in version 0, 64-bit in version 1.
    pub fn u32_or_u64(&mut self, version: u8, what: &str) -> Result<u64> {
        if version == 1 {
            self.u64(what)
        } else {
            self.u32(what).map(u64::from)
        }
    }

    /// Reads an entry count and checks that `count * entry_len` bytes follow,
    /// so a hostile count can never make us allocate or loop past the box.
    pub fn count(&mut self, entry_len: usize, what: &str) -> Result<usize> {
        let count = self.u32(what)? as usize;
        let needed = count.checked_mul(entry_len);
        match needed {
            Some(n) if n <= self.remaining() => Ok(count),
            _ => Err(self.error(format!(
                "{what} {count} needs {} bytes of {entry_len}-byte entries, box has {} left",
                count as u128 * entry_len as u128,
                self.remaining()
            ))),
        }
    }

    /// Iterates over the child boxes of this box's remaining bytes.
    pub fn children(&mut self) -> Children<'a> {
        let start = self.offset();
        Children {
            inner: Cursor::new(self.rest(), start, self.fourcc),
        }
    }
}

/// A child box: its type, and a cursor over its payload.
pub struct Child<'a> {
    pub fourcc: FourCc,
    pub body: Cursor<'a>,
}

pub struct Children<'a> {
    inner: Cursor<'a>,
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<Child<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let c = &mut self.inner;
        // Some muxers pad a container with a few zero bytes after its last
        // child: that is the end of the list, not a box.
        if c.remaining() < 8 && c.data[c.pos..].iter().all(|&b| b == 0) {
            c.rest();
            return None;
        }
        Some(self.next_child())
    }
}

impl<'a> Children<'a> {
    fn next_child(&mut self) -> Result<Child<'a>> {
        let c = &mut self.inner;
        let start = c.offset();
        let size32 = c.u32("box size")?;
        let fourcc = c.fourcc_value("box type")?;
        let (header, size) = match size32 {
            0 => (8, 8 + c.remaining() as u64),
            1 => (16, c.u64("64-bit box size")?),
            n => (8, u64::from(n)),
        };
        if size < header || size - header > c.remaining() as u64 {
            return Err(Error::corrupt(
                fourcc,
                start,
                format!(
                    "box size {size} does not fit in its parent ({} bytes left)",
                    c.remaining() + header as usize
                ),
            ));
        }
        let body_start = c.offset();
        let body = c.bytes((size - header) as usize, "box body")?;
        Ok(Child {
            fourcc,
            body: Cursor::new(body, body_start, fourcc),
        })
    }
}
