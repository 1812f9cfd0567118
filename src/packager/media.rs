//! Reading samples' bytes (the `mdat` data that ISO/IEC 14496-12 sample
//! tables point to) for the MPEG-TS writer: a bounded batch at a time, in
//! a few large positional reads rather than one read per sample.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use crate::packager::error::Result;

/// Where a source's bytes come from: a file, a buffer (tests, fuzzing),
/// or whatever the origin reads them from.
pub trait MediaSource: Send + Sync {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;

    /// A hint: these spans `(offset, len)` will be read next, in this
    /// order. A source for which each read costs a round trip fetches them
    /// together; a file ignores it.
    fn will_read(&self, _spans: &[(u64, usize)]) {}

    /// Whether each read may cost a round trip to a remote store: work
    /// that only looks (for captions, say) reads less from such a source.
    fn reads_are_remote(&self) -> bool {
        false
    }
}

impl MediaSource for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl MediaSource for &[u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// Samples closer than this in the file are read with one call; the bytes
/// in between (usually the other track's samples) are read and ignored.
const MAX_GAP_BYTES: u64 = 64 << 10;

/// A sample to read: its file offset and size.
#[derive(Clone, Copy, Debug)]
pub struct Wanted {
    pub offset: u64,
    pub size: u32,
}

impl Wanted {
    fn end(&self) -> u64 {
        self.offset + u64::from(self.size)
    }
}

/// The bytes of a batch of samples. Its buffers are kept from one batch to
/// the next, so a segment allocates about once.
#[derive(Default)]
pub struct Batch {
    buf: Vec<u8>,
    /// Where the n-th wanted sample is in `buf`.
    ranges: Vec<Range<usize>>,
    order: Vec<usize>,
}

impl Batch {
    /// Reads the samples of `wanted`; then `sample(n)` is `wanted[n]`'s bytes.
    /// The buffer holds the samples plus the gaps read between them, and
    /// gaps are read only up to as many bytes as the samples themselves
    /// (or [`MAX_GAP_BYTES`]), so a batch never reads more than about twice
    /// its samples.
    pub fn read(&mut self, src: &dyn MediaSource, wanted: &[Wanted]) -> Result<()> {
        // The buffer keeps its length from batch to batch: what a batch
        // reads overwrites it, and only growth is zeroed (a segment's
        // batches would otherwise write every byte twice).
        let mut used = 0;
        self.ranges.clear();
        self.ranges.resize(wanted.len(), 0..0);
        self.order.clear();
        self.order.extend(0..wanted.len());
        self.order.sort_unstable_by_key(|&n| wanted[n].offset);
        let sizes: u64 = wanted.iter().map(|w| u64::from(w.size)).sum();
        let mut gap_allowance = sizes.max(MAX_GAP_BYTES);
        let mut i = 0;
        while i < self.order.len() {
            // One span: samples whose gaps are small, read in one call.
            let span_start = wanted[self.order[i]].offset;
            let mut span_end = wanted[self.order[i]].end();
            let mut j = i + 1;
            while let Some(next) = self.order.get(j).map(|&n| wanted[n]) {
                let gap = next.offset.saturating_sub(span_end);
                if gap > MAX_GAP_BYTES || gap > gap_allowance {
                    break;
                }
                gap_allowance -= gap;
                span_end = span_end.max(next.end());
                j += 1;
            }
            let base = used;
            used += (span_end - span_start) as usize;
            if self.buf.len() < used {
                self.buf.resize(used, 0);
            }
            src.read_exact_at(&mut self.buf[base..used], span_start)?;
            for &n in &self.order[i..j] {
                let from = base + (wanted[n].offset - span_start) as usize;
                self.ranges[n] = from..from + wanted[n].size as usize;
            }
            i = j;
        }
        Ok(())
    }

    /// The bytes of the `n`-th wanted sample of the last [`Batch::read`].
    pub fn sample(&self, n: usize) -> &[u8] {
        &self.buf[self.ranges[n].clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_come_back_in_the_order_asked_whatever_their_place_in_the_file() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let wanted = [
            Wanted {
                offset: 150_000,
                size: 10,
            },
            Wanted { offset: 5, size: 3 },
            Wanted { offset: 7, size: 4 },
            Wanted {
                offset: 1000,
                size: 0,
            },
        ];
        let mut batch = Batch::default();
        batch.read(&data.as_slice(), &wanted).unwrap();
        for (n, w) in wanted.iter().enumerate() {
            let at = w.offset as usize;
            assert_eq!(batch.sample(n), &data[at..at + w.size as usize], "{n}");
        }
        // The far sample is read on its own, not with the gap before it.
        assert!(batch.buf.len() < 2000, "{}", batch.buf.len());
        let past_end = [Wanted {
            offset: 199_999,
            size: 2,
        }];
        assert!(batch.read(&data.as_slice(), &past_end).is_err());
    }
}
