//! The MPEG-TS segment writer (ISO/IEC 13818-1): one program with at most
//! one video and one audio stream, PAT and PMT first in every segment, PES
//! packets interleaved by decode time, PCR on the video PID.

mod audio;
mod packet;
mod pes;
mod psi;
mod video;

use std::io::Write;
use std::ops::Range;

use packet::{write_payload, Adaptation, ContinuityCounter, Pid, PACKET_LEN};
use psi::EsInfo;

use crate::packager::error::{Error, FourCc, Result};
use crate::packager::index::{Codec, MediaIndex, Track};
use crate::packager::media::{Batch, MediaSource, Wanted};
use crate::packager::segment::Segment;
use crate::packager::Threads;

const VIDEO_PID: Pid = Pid::new(0x100);
/// The PCR runs this far ahead of the decode times (ffmpeg's default mux
/// delay), so that an access unit arrives before it is due to be decoded
/// in the T-STD model (2.4.2). The stream offset keeps PCRs positive.
const PCR_LEAD_90K: i64 = 63_000;
const AUDIO_PID: Pid = Pid::new(0x101);

/// Audio frames are grouped into one PES up to this many payload bytes
/// (ffmpeg's default `pes_payload_size`) ...
const AUDIO_PES_MAX_BYTES: usize = 2930;
/// ... or this much time, so that audio stays close to the video it goes with.
const AUDIO_PES_MAX_90K: i64 = 9_000;
/// ... or this many frames. Real frames reach the time limit first (about
/// five frames in 100 ms); empty frames with equal timestamps, which only a
/// hostile file has, would otherwise make one PES of a whole segment.
const AUDIO_PES_MAX_FRAMES: usize = 64;

/// What goes into the next PES packet of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Unit {
    /// One video access unit.
    Video(usize),
    /// Consecutive audio frames, and their bytes as the PES carries them.
    Audio(Range<usize>, usize),
}

/// The PES packets of a segment in the order they are written: by decode
/// time, audio before video on a tie. Audio frames are grouped into one PES
/// until it is full or reaches the next video frame's decode time. It uses
/// the index only, so the size of a segment is known before it is made.
fn schedule<'a>(index: &'a MediaIndex, segment: &'a Segment) -> impl Iterator<Item = Unit> + 'a {
    let video = index.video.as_ref();
    let audio = index.audio.as_ref();
    let mut v = segment.video.start;
    let mut a = segment.audio.start;
    // Each sample's decode time is computed once (this runs over every
    // sample of a file to lay out its segments).
    let video_at = move |v: usize| {
        video
            .filter(|_| v < segment.video.end)
            .map(|t| t.dts_90k(v))
    };
    let mut next_video = video_at(v);
    let mut next_audio = audio
        .filter(|_| a < segment.audio.end)
        .map(|t| t.dts_90k(a));
    // The audio frames' times after the first, walked once.
    let mut audio_times = audio.map(|t| t.dts_90k_from(a + 1));
    let audio_header = audio.map_or(0, audio_header_len);
    std::iter::from_fn(move || match (next_video, next_audio) {
        (Some(vt), Some(at)) if at <= vt => {
            let times = audio_times.as_mut()?;
            let frames = Frames {
                track: audio?,
                header: audio_header,
                end: segment.audio.end,
            };
            let (end, next, bytes) = audio_pes_end(&frames, times, a, at, vt);
            let unit = Unit::Audio(a..end, bytes);
            (a, next_audio) = (end, next);
            Some(unit)
        }
        (Some(_), _) => {
            v += 1;
            next_video = video_at(v);
            Some(Unit::Video(v - 1))
        }
        (None, Some(at)) => {
            let times = audio_times.as_mut()?;
            let frames = Frames {
                track: audio?,
                header: audio_header,
                end: segment.audio.end,
            };
            let (end, next, bytes) = audio_pes_end(&frames, times, a, at, i64::MAX);
            let unit = Unit::Audio(a..end, bytes);
            (a, next_audio) = (end, next);
            Some(unit)
        }
        (None, None) => None,
    })
}

/// The audio frames of a segment: its track, the bytes each frame's
/// header adds, and the end of the segment's frames.
struct Frames<'t> {
    track: &'t Track,
    header: usize,
    end: usize,
}

/// The end of the audio PES that starts with frame `start` (decoded at
/// `first_90k`): at most the segment's end, no frame decoded after
/// `until_90k`, within the size and time limits. With the decode time of
/// the frame at the end, and the PES's payload bytes. `times` gives the
/// decode times of the frames after `start`, and is left after the frame
/// at the end.
fn audio_pes_end(
    frames: &Frames,
    times: &mut impl Iterator<Item = i64>,
    start: usize,
    first_90k: i64,
    until_90k: i64,
) -> (usize, Option<i64>, usize) {
    let len = |i: usize| frames.track.samples[i].size as usize + frames.header;
    let mut bytes = len(start);
    let mut i = start + 1;
    while i < frames.end {
        let t = times.next().expect("a time for each sample");
        let len = len(i);
        if t > until_90k
            || t - first_90k >= AUDIO_PES_MAX_90K
            || bytes + len > AUDIO_PES_MAX_BYTES
            || i - start >= AUDIO_PES_MAX_FRAMES
        {
            return (i, Some(t), bytes);
        }
        bytes += len;
        i += 1;
    }
    (i, None, bytes)
}

/// The most bytes video sample `i`'s NAL units take in Annex B form.
fn annexb_len(track: &Track, i: usize) -> usize {
    track.samples[i].size as usize + track.annexb_growth(i)
}

/// Bytes each frame of an audio track grows by in the PES.
fn audio_header_len(track: &Track) -> usize {
    let Codec::Audio(config) = &track.codec else {
        unreachable!("audio track")
    };
    audio::header_len(config)
}

/// Payload-carrying packets of a segment on the video and on the audio
/// PID, as [`write_segment`] writes them: exact, since an access unit's
/// length is predicted from the index as the most it can be (each NAL
/// length becomes a 4-byte start code; with 1- or 2-byte lengths the index
/// counts the NAL units of each sample, [`Track::annexb_growth`]) and one
/// that comes out shorter (an AUD or empty NAL unit dropped) is padded.
///
/// The prediction, rather than counting what is written, is what lets any
/// segment be made alone, in any order, with the counters it continues
/// from: counting would need every earlier segment's bytes.
///
/// Each PID is counted in a pass of its own over sizes and times, not by
/// walking the [`schedule`] (this runs over every sample of a file when
/// it is opened): a video PES does not depend on the audio around it, and
/// an audio PES depends only on the decode time of the video frame after
/// its first frame.
fn packet_counts(index: &MediaIndex, segment: &Segment) -> (u64, u64) {
    let video = index
        .video
        .as_ref()
        .map_or(0, |track| video_packets(track, segment));
    let audio = index
        .audio
        .as_ref()
        .map_or(0, |track| audio_packets(index, track, segment));
    (video, audio)
}

/// The video packets of a segment: one PES per access unit, as
/// [`unit_packets`] counts them.
fn video_packets(track: &Track, segment: &Segment) -> u64 {
    let Codec::Video(config) = &track.codec else {
        unreachable!("video track")
    };
    let plain = video::access_unit_len(config, 0, false);
    let parameter_sets = video::access_unit_len(config, 0, true) - plain;
    // The PCR is on every video PES (see `Muxer::video`).
    let af = |random_access| {
        Adaptation {
            pcr_90k: Some(0),
            random_access,
        }
        .len()
    };
    let (af_sync, af_other) = (af(true), af(false));
    let mut sync_at = track.sync_from(segment.video.start);
    segment
        .video
        .clone()
        .map(|i| {
            let sync = sync_at.is_sync(i);
            let au = plain + annexb_len(track, i) + if sync { parameter_sets } else { 0 };
            let pes = pes::header_len(track.has_own_pts(i)) + au;
            packet::packets_for(pes, if sync { af_sync } else { af_other }) as u64
        })
        .sum()
}

/// The audio packets of a segment: its frames grouped into PES packets as
/// [`schedule`] groups them, each up to the decode time of the first video
/// frame not decoded before the PES's first frame.
fn audio_packets(index: &MediaIndex, track: &Track, segment: &Segment) -> u64 {
    let (mut a, end) = (segment.audio.start, segment.audio.end);
    if a >= end {
        return 0;
    }
    let af = if index.video.is_none() {
        audio_only_adaptation(0).len()
    } else {
        0
    };
    let frames = Frames {
        track,
        header: audio_header_len(track),
        end,
    };
    let video_samples = segment.video.len();
    let mut video_times = index
        .video
        .as_ref()
        .filter(|_| video_samples > 0)
        .map(|t| t.dts_90k_from(segment.video.start).take(video_samples));
    let mut next_video = video_times.as_mut().and_then(Iterator::next);
    let mut times = track.dts_90k_from(a + 1);
    let mut at = track.dts_90k(a);
    let mut packets = 0;
    loop {
        // The video frames the schedule writes before this PES.
        while next_video.is_some_and(|vt| vt < at) {
            next_video = video_times.as_mut().and_then(Iterator::next);
        }
        let until = next_video.unwrap_or(i64::MAX);
        let (pes_end, next, bytes) = audio_pes_end(&frames, &mut times, a, at, until);
        packets += packet::packets_for(pes::header_len(false) + bytes, af) as u64;
        match next {
            Some(t) => (a, at) = (pes_end, t),
            None => return packets,
        }
    }
}

/// [`packet_counts`] by walking the schedule that [`write_segment`]
/// writes (tests check the two agree).
#[cfg(test)]
pub(crate) fn scheduled_packet_counts(index: &MediaIndex, segment: &Segment) -> (u64, u64) {
    let (mut video, mut audio) = (0, 0);
    let mut sync_at = index
        .video
        .as_ref()
        .map(|t| t.sync_from(segment.video.start));
    for unit in schedule(index, segment) {
        match unit_packets(index, unit, &mut sync_at) {
            (n, true) => video += n,
            (n, false) => audio += n,
        }
    }
    (video, audio)
}

/// The packet counts of each of `segments` (tests compare them with
/// [`scheduled_packet_counts`]).
#[cfg(test)]
pub(crate) fn packet_counts_of(index: &MediaIndex, segments: &[Segment]) -> Vec<(u64, u64)> {
    segments.iter().map(|s| packet_counts(index, s)).collect()
}

/// The bytes of a segment from its start through the end of its first
/// video access unit, a key frame (segments start at one): the PAT, the
/// PMT, the audio muxed before it and the picture. `None` without video.
/// What an I-frame playlist's byte range of the segment is
/// (RFC 8216 4.3.3.6).
pub fn first_picture_len(index: &MediaIndex, segment: &Segment) -> Option<u64> {
    let track = index.video.as_ref()?;
    let mut sync_at = Some(track.sync_from(segment.video.start));
    let mut packets = 2;
    for unit in schedule(index, segment) {
        let (n, video) = unit_packets(index, unit, &mut sync_at);
        packets += n;
        if video {
            return Some(packets * PACKET_LEN as u64);
        }
    }
    None
}

/// The packets of one unit of a segment's schedule, as [`write_segment`]
/// writes them, and whether they are video ones.
fn unit_packets(
    index: &MediaIndex,
    unit: Unit,
    sync_at: &mut Option<crate::packager::index::SyncCursor<'_>>,
) -> (u64, bool) {
    match unit {
        Unit::Video(i) => {
            let track = index.video.as_ref().expect("video unit");
            let Codec::Video(config) = &track.codec else {
                unreachable!("video track")
            };
            let sync = sync_at.as_mut().expect("video track").is_sync(i);
            let au = video::access_unit_len(config, annexb_len(track, i), sync);
            let pes = pes::header_len(track.has_own_pts(i)) + au;
            let af = Adaptation {
                pcr_90k: Some(0),
                random_access: sync,
            }
            .len();
            (packet::packets_for(pes, af) as u64, true)
        }
        Unit::Audio(_, payload) => {
            let pes = pes::header_len(false) + payload;
            let af = if index.video.is_none() {
                audio_only_adaptation(0).len()
            } else {
                0
            };
            (packet::packets_for(pes, af) as u64, false)
        }
    }
}

/// Continuity counters at the start of a segment. RFC 8216 (3) wants them
/// to run on from one segment to the next, as in one transport stream, so
/// segment K starts where segment K-1 left off; computed from the index, so
/// that any segment can still be made alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Continuity {
    /// PAT and PMT: one packet each per segment.
    psi: u8,
    video: u8,
    audio: u8,
}

/// What is known of a segment before it is made, from the index alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentLayout {
    /// The counters the segment starts with.
    pub continuity: Continuity,
    /// Its size as [`write_segment`] writes it (see [`packet_counts`]),
    /// for bitrates in playlists.
    pub len_bytes: u64,
}

/// Segments from which a layout's walk is shared between two threads.
const PARALLEL_LAYOUT_SEGMENTS: usize = 256;

/// The layout of each of `segments`, in one walk over their samples (a
/// long file's in two halves at once: each segment's packets are counted
/// on its own, and only the sums run on from one to the next).
pub fn layout(index: &MediaIndex, segments: &[Segment]) -> Vec<SegmentLayout> {
    layout_with(index, segments, Threads::Auto)
}

pub fn layout_with(
    index: &MediaIndex,
    segments: &[Segment],
    threads: Threads,
) -> Vec<SegmentLayout> {
    let count = |part: &[Segment]| -> Vec<(u64, u64)> {
        part.iter().map(|s| packet_counts(index, s)).collect()
    };
    let (mut counts, later) = threads.map_halves(segments, PARALLEL_LAYOUT_SEGMENTS, count);
    counts.extend(later.into_iter().flatten());
    let mut at = Continuity::default();
    let mut out = Vec::with_capacity(segments.len());
    for (video, audio) in counts {
        out.push(SegmentLayout {
            continuity: at,
            len_bytes: (2 + video + audio) * PACKET_LEN as u64,
        });
        at = Continuity {
            psi: (at.psi + 1) & 0x0f,
            video: ((u64::from(at.video) + video) & 0x0f) as u8,
            audio: ((u64::from(at.audio) + audio) & 0x0f) as u8,
        };
    }
    out
}

fn audio_only_adaptation(pcr_90k: u64) -> Adaptation {
    Adaptation {
        pcr_90k: Some(pcr_90k),
        random_access: true,
    }
}

/// Sample bytes read and muxed at a time: with the largest access unit, it
/// bounds the memory one segment takes, however long the segment is.
pub const BATCH_BYTES: usize = 1 << 20;
/// ... and samples per batch, which bounds the batch's bookkeeping.
const BATCH_SAMPLES: usize = 4096;

/// Largest video sample we mux. An access unit is held whole (its PES
/// length comes first), so this bounds memory; a 4K intra frame at a high
/// bitrate is a few megabytes.
pub const MAX_VIDEO_SAMPLE_BYTES: u32 = 16 << 20;

/// Samples of one segment may add up to this much: a 6 s segment of 100
/// Mbit/s video is 75 MB. A file whose samples claim more (overlapping
/// samples, say) would make one request read without bound.
const MAX_SEGMENT_MEDIA_BYTES: u64 = 1 << 30;

/// What a segment is made of, besides its samples' bytes.
pub struct SegmentInput<'a> {
    pub index: &'a MediaIndex,
    pub segment: &'a Segment,
    /// Added to every timestamp.
    pub offset_90k: i64,
    pub continuity: Continuity,
}

/// Writes the segment to `out`, reading its samples from `src` at most
/// `batch_bytes` at a time (one access unit may be more); returns the
/// bytes written. The bytes do not depend on `batch_bytes`.
pub fn write_segment(
    input: &SegmentInput,
    src: &dyn MediaSource,
    out: &mut dyn Write,
    batch_bytes: usize,
) -> Result<u64> {
    let SegmentInput { index, segment, .. } = *input;
    if let Some(why) = index.ts_refusal() {
        return Err(Error::Unsupported(why));
    }
    check_segment_media(index, segment)?;
    let mut out = Counted {
        inner: out,
        bytes: 0,
    };
    let mut mux = Muxer::new(index, input.offset_90k, input.continuity, &mut out);
    let mut units = Vec::new();
    let mut wanted = Vec::new();
    let mut bytes = 0;
    let mut batch = Batch::default();
    for unit in schedule(index, segment) {
        let first = wanted.len();
        push_samples(index, &unit, &mut wanted);
        let unit_bytes: usize = wanted[first..].iter().map(|w| w.size as usize).sum();
        if !units.is_empty() && (bytes + unit_bytes > batch_bytes || wanted.len() > BATCH_SAMPLES) {
            let this_unit = wanted.split_off(first);
            mux.batch(&units, &wanted, &mut batch, src)?;
            (units, wanted, bytes) = (Vec::new(), this_unit, 0);
        }
        units.push(unit);
        bytes += unit_bytes;
    }
    mux.batch(&units, &wanted, &mut batch, src)?;
    mux.spill()?;
    out.flush()?;
    Ok(out.bytes)
}

/// The bounds on one segment's samples, checked before any is read.
pub(crate) fn check_segment_media(index: &MediaIndex, segment: &Segment) -> Result<()> {
    let mut total = 0u64;
    if let Some(video) = &index.video {
        for (i, s) in video.samples[segment.video.clone()].iter().enumerate() {
            if s.size > MAX_VIDEO_SAMPLE_BYTES {
                return Err(Error::Unsupported(format!(
                    "video sample {} is {} bytes, more than {MAX_VIDEO_SAMPLE_BYTES}",
                    segment.video.start + i + 1,
                    s.size
                )));
            }
            total += u64::from(s.size);
        }
    }
    if let Some(audio) = &index.audio {
        for s in &audio.samples[segment.audio.clone()] {
            // Refused before it is read, not after (`audio::write_frame`).
            if s.size as usize > audio::MAX_FRAME_BYTES {
                return Err(Error::corrupt(
                    FourCc(*b"mdat"),
                    s.offset,
                    format!(
                        "audio frame of {} bytes (at most {})",
                        s.size,
                        audio::MAX_FRAME_BYTES
                    ),
                ));
            }
            total += u64::from(s.size);
        }
    }
    if total > MAX_SEGMENT_MEDIA_BYTES {
        return Err(Error::Unsupported(format!(
            "a segment would hold {total} bytes of samples, more than {MAX_SEGMENT_MEDIA_BYTES}; \
             use a shorter segment duration"
        )));
    }
    Ok(())
}

/// The samples `unit` needs, in the order the muxer takes them.
fn push_samples(index: &MediaIndex, unit: &Unit, wanted: &mut Vec<Wanted>) {
    let (track, range) = match unit {
        Unit::Video(i) => (index.video.as_ref(), *i..*i + 1),
        Unit::Audio(frames, _) => (index.audio.as_ref(), frames.clone()),
    };
    let track = track.expect("scheduled units have a track");
    wanted.extend(track.samples[range].iter().map(|s| Wanted {
        offset: s.offset,
        size: s.size,
    }));
}

/// A writer that counts what goes through it.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes of packets gathered before they are written: large writes, and a
/// bounded amount of memory.
const SPILL_BYTES: usize = 256 << 10;

struct Muxer<'a, 'w> {
    index: &'a MediaIndex,
    offset_90k: i64,
    out: &'w mut dyn Write,
    /// Packets made and not written yet: they go to `out` in large writes,
    /// each byte copied once into place.
    packets: Vec<u8>,
    video_cc: ContinuityCounter,
    audio_cc: ContinuityCounter,
    pes: Vec<u8>,
    /// PES stream_id of the audio stream (unused without audio).
    audio_stream_id: u8,
}

impl<'a, 'w> Muxer<'a, 'w> {
    /// Starts the segment with its PAT and PMT.
    fn new(
        index: &'a MediaIndex,
        offset_90k: i64,
        continuity: Continuity,
        out: &'w mut dyn Write,
    ) -> Self {
        let mut streams = Vec::new();
        let mut audio_stream_id = 0;
        if let Some(Codec::Video(v)) = index.video.as_ref().map(|t| &t.codec) {
            streams.push(EsInfo {
                stream_type: video::stream_type(v),
                pid: VIDEO_PID,
                descriptors: Vec::new(),
            });
        }
        if let Some(Codec::Audio(a)) = index.audio.as_ref().map(|t| &t.codec) {
            let (stream_type, stream_id, descriptors) = audio::stream_info(a);
            audio_stream_id = stream_id;
            streams.push(EsInfo {
                stream_type,
                pid: AUDIO_PID,
                descriptors,
            });
        }
        let pcr_pid = if index.video.is_some() {
            VIDEO_PID
        } else {
            AUDIO_PID
        };
        let mut packets = Vec::with_capacity(SPILL_BYTES + (1 << 20));
        psi::write_pat(
            &mut packets,
            &mut ContinuityCounter::starting_at(continuity.psi),
        );
        psi::write_pmt(
            &mut packets,
            &mut ContinuityCounter::starting_at(continuity.psi),
            pcr_pid,
            &streams,
        );
        Muxer {
            index,
            offset_90k,
            out,
            packets,
            video_cc: ContinuityCounter::starting_at(continuity.video),
            audio_cc: ContinuityCounter::starting_at(continuity.audio),
            audio_stream_id,
            pes: Vec::new(),
        }
    }

    /// Writes the packets made so far.
    fn spill(&mut self) -> std::io::Result<()> {
        self.out.write_all(&self.packets)?;
        self.packets.clear();
        Ok(())
    }

    /// Writes the packets made so far once there are enough of them.
    fn spill_when_full(&mut self) -> std::io::Result<()> {
        if self.packets.len() >= SPILL_BYTES {
            self.spill()?;
        }
        Ok(())
    }

    /// Reads the samples of `units` (listed in `wanted`, in order) and
    /// writes the units.
    fn batch(
        &mut self,
        units: &[Unit],
        wanted: &[Wanted],
        batch: &mut Batch,
        src: &dyn MediaSource,
    ) -> Result<()> {
        batch.read(src, wanted)?;
        let mut n = 0;
        for unit in units {
            match unit {
                Unit::Video(i) => {
                    let track = self.index.video.as_ref().expect("video unit");
                    self.video(track, *i, batch.sample(n))?;
                    n += 1;
                }
                Unit::Audio(frames, _) => {
                    let track = self.index.audio.as_ref().expect("audio unit");
                    let first = n;
                    self.audio(track, frames.clone(), |i| {
                        batch.sample(first + i - frames.start)
                    })?;
                    n += frames.len();
                }
            }
        }
        Ok(())
    }

    /// One video access unit in one PES packet.
    fn video(&mut self, track: &Track, i: usize, sample: &[u8]) -> Result<()> {
        let Codec::Video(config) = &track.codec else {
            unreachable!("video track")
        };
        let sync = track.is_sync(i);
        let dts = track.dts_90k(i) + self.offset_90k;
        let pts = track.pts_90k(i) + self.offset_90k;
        // The access unit goes straight after the header, whose length
        // field is filled in once the access unit's size is known.
        self.pes.clear();
        pes::write_header(&mut self.pes, pes::STREAM_ID_VIDEO, pts, dts, 0);
        let au_start = self.pes.len();
        video::write_access_unit(&mut self.pes, config, sample, sync, track.samples[i].offset)?;
        // An access unit shorter than predicted (it held an AUD of its own)
        // is padded with trailing_zero_8bits (H.264 / H.265 B.2), so that
        // packet counts, and so continuity counters, are as predicted. One
        // longer than predicted means the index does not describe the file.
        let predicted = au_start + video::access_unit_len(config, annexb_len(track, i), sync);
        if self.pes.len() > predicted {
            return Err(Error::corrupt(
                FourCc(*b"mdat"),
                track.samples[i].offset,
                format!(
                    "video sample {} holds more NAL units than its index says",
                    i + 1
                ),
            ));
        }
        self.pes.resize(predicted, 0);
        pes::set_packet_length(&mut self.pes);
        let first = Adaptation {
            pcr_90k: Some((dts - PCR_LEAD_90K) as u64),
            random_access: sync,
        };
        write_payload(
            &mut self.packets,
            VIDEO_PID,
            &mut self.video_cc,
            first,
            &self.pes,
        );
        Ok(self.spill_when_full()?)
    }

    /// Audio frames in one PES packet; `frame(i)` gives frame `i`'s bytes.
    fn audio<'m>(
        &mut self,
        track: &Track,
        frames: Range<usize>,
        frame: impl Fn(usize) -> &'m [u8],
    ) -> Result<()> {
        let Codec::Audio(config) = &track.codec else {
            unreachable!("audio track")
        };
        let start = frames.start;
        let pts = track.pts_90k(start) + self.offset_90k;
        // Frames go straight after the header, as in `video`.
        self.pes.clear();
        pes::write_header(&mut self.pes, self.audio_stream_id, pts, pts, 0);
        for i in frames {
            audio::write_frame(&mut self.pes, config, frame(i), track.samples[i].offset)?;
        }
        pes::set_packet_length(&mut self.pes);
        let first = if self.index.video.is_none() {
            audio_only_adaptation((track.dts_90k(start) + self.offset_90k - PCR_LEAD_90K) as u64)
        } else {
            Adaptation::default()
        };
        write_payload(
            &mut self.packets,
            AUDIO_PID,
            &mut self.audio_cc,
            first,
            &self.pes,
        );
        Ok(self.spill_when_full()?)
    }
}

#[cfg(test)]
mod tests {
    //! Write segments of the fixtures, read them back with a small demuxer
    //! written here, and compare with the index.

    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::packager::rendition::Rendition;
    use crate::packager::timeline::Timeline;

    /// A PES read back: its PID, PTS, DTS and payload.
    struct Pes {
        pid: u16,
        pts: i64,
        dts: i64,
        payload: Vec<u8>,
        random_access: bool,
        /// Number of the packet it starts in.
        start: usize,
    }

    fn demux(ts: &[u8]) -> Vec<Pes> {
        assert_eq!(ts.len() % PACKET_LEN, 0);
        let mut counters: HashMap<u16, u8> = HashMap::new();
        // PID -> (PES bytes so far, random access, packet number it started at)
        let mut open: HashMap<u16, (Vec<u8>, bool, usize)> = HashMap::new();
        let mut done = Vec::new();
        for (n, p) in ts.chunks(PACKET_LEN).enumerate() {
            assert_eq!(p[0], 0x47);
            let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
            let start = p[1] & 0x40 != 0;
            let cc = p[3] & 0x0f;
            if let Some(prev) = counters.insert(pid, cc) {
                assert_eq!(cc, (prev + 1) & 0x0f, "continuity on PID {pid}");
            }
            let (body, ra) = if p[3] & 0x20 != 0 {
                let af_len = usize::from(p[4]);
                (&p[5 + af_len..], af_len > 0 && p[5] & 0x40 != 0)
            } else {
                (&p[4..], false)
            };
            if pid == 0 || pid == psi::PMT_PID.value() {
                continue;
            }
            if start {
                if let Some((bytes, ra, started)) = open.remove(&pid) {
                    done.push(parse_pes(pid, &bytes, ra, started));
                }
                open.insert(pid, (body.to_vec(), ra, n));
            } else {
                open.get_mut(&pid)
                    .expect("PES continues")
                    .0
                    .extend_from_slice(body);
            }
        }
        for (pid, (bytes, ra, started)) in open {
            done.push(parse_pes(pid, &bytes, ra, started));
        }
        done.sort_by_key(|p| p.start);
        done
    }

    fn parse_pes(pid: u16, b: &[u8], random_access: bool, start: usize) -> Pes {
        assert_eq!(&b[..3], &[0, 0, 1]);
        let declared = usize::from(u16::from_be_bytes([b[4], b[5]]));
        let header_len = 9 + usize::from(b[8]);
        if declared != 0 {
            assert_eq!(declared + 6, b.len(), "PES_packet_length");
        }
        let pts = pes::read_timestamp(&b[9..14]);
        let dts = if b[7] & 0x40 != 0 {
            pes::read_timestamp(&b[14..19])
        } else {
            pts
        };
        Pes {
            pid,
            pts,
            dts,
            payload: b[header_len..].to_vec(),
            random_access,
            start,
        }
    }

    fn fixture(name: &str) -> Rendition {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        Rendition::open(&path, 2.0).unwrap()
    }

    #[test]
    fn video_and_audio_read_back_with_the_index_timestamps() {
        for name in ["h264-aac-bframes.mp4", "hevc-aac.mp4", "ac3.mp4"] {
            let r = fixture(name);
            let (index, plan) = (r.index(), r.plan());
            let layout = layout(index, &plan.segments);
            let video = index.video.as_ref().unwrap();
            let audio = index.audio.as_ref().unwrap();
            for (k, segment) in plan.segments.iter().enumerate() {
                let bytes = r.segment(k).unwrap();
                assert_eq!(
                    bytes.len() as u64,
                    layout[k].len_bytes,
                    "{name} {k}: size known ahead"
                );
                let pes = demux(&bytes);
                let v: Vec<&Pes> = pes.iter().filter(|p| p.pid == VIDEO_PID.value()).collect();
                assert_eq!(
                    v.len(),
                    segment.video.len(),
                    "{name} {k}: one PES per frame"
                );
                for (p, i) in v.iter().zip(segment.video.clone()) {
                    assert_eq!(p.pts, video.pts_90k(i) + plan.stream_offset_90k);
                    assert_eq!(p.dts, video.dts_90k(i) + plan.stream_offset_90k);
                    assert!(p.dts <= p.pts);
                    assert_eq!(p.random_access, video.is_sync(i));
                    assert_eq!(&p.payload[..4], &[0, 0, 0, 1], "Annex B");
                }
                assert!(v[0].random_access, "{name} {k} starts with a keyframe");
                let a: Vec<&Pes> = pes.iter().filter(|p| p.pid == AUDIO_PID.value()).collect();
                let first_audio = segment.audio.start;
                assert_eq!(
                    a[0].pts,
                    audio.pts_90k(first_audio) + plan.stream_offset_90k
                );
                let payload: usize = a.iter().map(|p| p.payload.len()).sum();
                let want: usize = segment
                    .audio
                    .clone()
                    .map(|i| audio.samples[i].size as usize + audio_header_len(audio))
                    .sum();
                assert_eq!(payload, want, "{name} {k}: every audio frame");
            }
        }
    }

    #[test]
    fn continuity_counters_run_on_across_segments() {
        // demux() checks every PID's counter, PAT and PMT included.
        for name in [
            "h264-aac-bframes.mp4",
            "hevc-aac.mp4",
            "ac3.mp4",
            "aac-only.m4a",
            "eac3-only.mp4",
        ] {
            let r = fixture(name);
            let joined: Vec<u8> = (0..r.segment_count())
                .flat_map(|k| r.segment(k).unwrap())
                .collect();
            let pes = demux(&joined);
            assert!(pes.len() > 10, "{name}");
        }
    }

    #[test]
    fn segment_bytes_do_not_depend_on_the_batch_size() {
        for name in ["h264-aac-bframes.mp4", "hevc-aac.mp4", "aac-only.m4a"] {
            let r = fixture(name);
            for k in 0..r.segment_count() {
                let whole = r.segment(k).unwrap();
                // One unit per batch, a few per batch, and all in one.
                for batch_bytes in [1, 5000, usize::MAX] {
                    let mut out = Vec::new();
                    let len = r.write_segment_batched(k, &mut out, batch_bytes).unwrap();
                    assert_eq!(len, out.len() as u64);
                    assert!(out == whole, "{name} segment {k}, batches of {batch_bytes}");
                }
            }
        }
    }

    /// Segment 1 started at sample 0 even when it was no sync sample: a
    /// decoder got frames it could not decode first. They are left out.
    #[test]
    fn video_before_the_first_random_access_point_is_left_out() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/h264-aac-bframes.mp4");
        let mut index = fixture("h264-aac-bframes.mp4").index().clone();
        // The file as if it had been cut 5 frames into its first GOP.
        let video = index.video.as_mut().unwrap();
        video.samples.drain(..5);
        let mut times = Timeline::starting_at(video.dts(5));
        for i in 5..video.times.len() {
            times.push(1, video.duration_of(i) as u32).unwrap();
        }
        video.times = times;
        let shift = |list: &mut Vec<u32>| {
            *list = list.iter().filter(|&&i| i >= 5).map(|&i| i - 5).collect();
        };
        shift(video.sync.as_mut().unwrap());
        shift(&mut video.random_access);
        let min_cts = video.samples.iter().map(|s| s.cts_offset).min().unwrap();
        video.decode_delay = i64::from(min_cts.min(0)).abs();
        index.validate().unwrap();
        let first_ra = index.video.as_ref().unwrap().random_access[0] as usize;
        assert_eq!(first_ra, 55);

        let r = Rendition::from_index(
            &path,
            std::sync::Arc::new(std::fs::File::open(&path).unwrap()),
            index,
            2.0,
        );
        let video = r.index().video.as_ref().unwrap();
        assert_eq!(r.plan().segments[0].video.start, first_ra);
        assert!(r.plan().independent_segments(r.index()));
        let pes = demux(&r.segment(0).unwrap());
        let first_video = pes.iter().find(|p| p.pid == VIDEO_PID.value()).unwrap();
        assert!(first_video.random_access);
        assert_eq!(
            first_video.pts,
            video.pts_90k(first_ra) + r.plan().stream_offset_90k
        );
    }

    #[test]
    fn pcr_runs_ahead_of_decode_times() {
        let r = fixture("h264-aac-bframes.mp4");
        let bytes = r.segment(1).unwrap();
        for p in bytes.chunks(PACKET_LEN) {
            let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
            if pid == VIDEO_PID.value() && p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x10 != 0 {
                let pcr = (u64::from(p[6]) << 25)
                    | (u64::from(p[7]) << 17)
                    | (u64::from(p[8]) << 9)
                    | (u64::from(p[9]) << 1)
                    | u64::from(p[10] >> 7);
                let pes = &p[5 + usize::from(p[4])..];
                let dts = pes::read_timestamp(if pes[7] & 0x40 != 0 {
                    &pes[14..19]
                } else {
                    &pes[9..14]
                });
                assert_eq!(dts - pcr as i64, PCR_LEAD_90K);
            }
        }
    }

    #[test]
    fn packets_are_in_decode_order_across_pids() {
        let r = fixture("h264-aac-bframes.mp4");
        let bytes = r.segment(1).unwrap();
        let dts: Vec<i64> = demux(&bytes).iter().map(|p| p.dts).collect();
        let mut sorted = dts.clone();
        sorted.sort();
        assert_eq!(dts, sorted);
    }
}
