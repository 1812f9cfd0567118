//! Reading a segment's media bytes: only the samples the segment holds, in
//! a few large positional reads rather than one read per sample.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use crate::packager::error::{Error, Result};
use crate::packager::index::{MediaIndex, Track};
use crate::packager::segment::Segment;

/// Samples closer than this in the file are read with one call; the bytes
/// in between (usually the other track's samples) are read and ignored.
const MAX_GAP_BYTES: u64 = 64 << 10;

/// Samples of one segment may add up to this much. A 6 s segment of 100
/// Mbit/s video is 75 MB; a file whose samples claim more (overlapping
/// samples, say) would make us allocate without bound.
const MAX_SEGMENT_MEDIA_BYTES: u64 = 1 << 30;

/// Samples one segment may hold: an hour of 30 fps video and 48 kHz audio
/// is under 300 000.
const MAX_SEGMENT_SAMPLES: usize = 1 << 19;

/// The bytes of one segment's samples.
pub struct SegmentMedia {
    buf: Vec<u8>,
    /// Position in `buf` of each video sample of the segment, in order.
    video: Vec<Range<usize>>,
    audio: Vec<Range<usize>>,
}

impl SegmentMedia {
    pub fn read(file: &File, index: &MediaIndex, segment: &Segment) -> Result<SegmentMedia> {
        Self::read_with(
            |buf, offset| file.read_exact_at(buf, offset),
            index,
            segment,
        )
    }

    /// The same from a file held in memory (tests, fuzzing).
    pub fn from_bytes(data: &[u8], index: &MediaIndex, segment: &Segment) -> Result<SegmentMedia> {
        let read = |buf: &mut [u8], offset: u64| {
            let bytes = usize::try_from(offset)
                .ok()
                .and_then(|start| data.get(start..start.checked_add(buf.len())?))
                .ok_or(std::io::ErrorKind::UnexpectedEof)?;
            buf.copy_from_slice(bytes);
            Ok(())
        };
        Self::read_with(read, index, segment)
    }

    fn read_with(
        read_exact_at: impl Fn(&mut [u8], u64) -> std::io::Result<()>,
        index: &MediaIndex,
        segment: &Segment,
    ) -> Result<SegmentMedia> {
        let mut wanted: Vec<Wanted> = Vec::new();
        push_samples(&mut wanted, index.video.as_ref(), &segment.video, true);
        push_samples(&mut wanted, index.audio.as_ref(), &segment.audio, false);
        if wanted.len() > MAX_SEGMENT_SAMPLES {
            return Err(Error::Unsupported(format!(
                "a segment would hold {} samples, more than {MAX_SEGMENT_SAMPLES}",
                wanted.len()
            )));
        }
        let total: u64 = wanted.iter().map(|w| u64::from(w.size)).sum();
        if total > MAX_SEGMENT_MEDIA_BYTES {
            return Err(Error::Unsupported(format!(
                "a segment would hold {total} bytes of samples, more than {MAX_SEGMENT_MEDIA_BYTES}; \
                 use a shorter segment duration"
            )));
        }
        wanted.sort_unstable_by_key(|w| w.offset);

        let mut media = SegmentMedia {
            buf: Vec::new(),
            video: vec![0..0; segment.video.len()],
            audio: vec![0..0; segment.audio.len()],
        };
        let mut i = 0;
        while i < wanted.len() {
            // One span: samples whose gaps are small, read in one call.
            let span_start = wanted[i].offset;
            let mut span_end = wanted[i].end();
            let mut j = i + 1;
            while j < wanted.len() && wanted[j].offset <= span_end + MAX_GAP_BYTES {
                span_end = span_end.max(wanted[j].end());
                j += 1;
            }
            // Gaps count too: tiny samples far apart must not make us read
            // most of a huge file.
            if (media.buf.len() as u64).saturating_add(span_end - span_start)
                > MAX_SEGMENT_MEDIA_BYTES
            {
                return Err(Error::Unsupported(format!(
                    "a segment's samples are spread over more than {MAX_SEGMENT_MEDIA_BYTES} bytes"
                )));
            }
            let base = media.buf.len();
            media.buf.resize(base + (span_end - span_start) as usize, 0);
            read_exact_at(&mut media.buf[base..], span_start)?;
            for w in &wanted[i..j] {
                let from = base + (w.offset - span_start) as usize;
                let slot = if w.video {
                    &mut media.video
                } else {
                    &mut media.audio
                };
                slot[w.slot] = from..from + w.size as usize;
            }
            i = j;
        }
        Ok(media)
    }

    /// The `n`-th video sample of the segment (0 = its first).
    pub fn video(&self, n: usize) -> &[u8] {
        &self.buf[self.video[n].clone()]
    }

    pub fn audio(&self, n: usize) -> &[u8] {
        &self.buf[self.audio[n].clone()]
    }

    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }
}

struct Wanted {
    offset: u64,
    size: u32,
    video: bool,
    slot: usize,
}

impl Wanted {
    fn end(&self) -> u64 {
        self.offset + u64::from(self.size)
    }
}

fn push_samples(out: &mut Vec<Wanted>, track: Option<&Track>, range: &Range<usize>, video: bool) {
    let Some(track) = track else { return };
    for (slot, s) in track.samples[range.clone()].iter().enumerate() {
        out.push(Wanted {
            offset: s.offset,
            size: s.size,
            video,
            slot,
        });
    }
}
