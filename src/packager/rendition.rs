//! A rendition: one source file, its index and its segment plan, and what
//! can be made of them (segments, a media playlist, a master playlist entry).
//!
//! Work per request is bounded by what is packaged, whatever the file:
//!
//! - Opening a source (once; the origin then keeps the index): the top-level
//!   box headers, the `moov`'s small boxes, one `moof` at a time (at most
//!   32 MiB; each read twice, first to count the samples so that the index
//!   is allocated once), the chosen tracks' tables read once front to back;
//!   per-sample work on at most `min(2^23, file_len / 4)` samples
//!   ([`sample_budget`](crate::packager::index::sample_budget)), with memory
//!   of 16 bytes a sample (the index; 24 with a duration that changes
//!   from sample to sample, 4 more with 1- or 2-byte NAL lengths) plus
//!   buffers of 64 KiB; the video's NAL unit headers read in small blocks,
//!   at most `4 * file_len + 16 MiB` bytes in all; the plan and the TS
//!   layout, one pass over the samples.
//! - A segment: one pass over its samples to schedule and mux them, reading
//!   their bytes (at most 1 GiB, plus gaps no larger than the samples) a
//!   batch of 1 MiB at a time: memory is a batch, one access unit (at most
//!   16 MiB) and its PES packet, however long the segment.
//! - A playlist: one pass over the segments.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::packager::captions::Captions;
use crate::packager::error::{Error, FourCc, Result};
use crate::packager::fmp4::{self, TrackKind};
use crate::packager::hls::{self, Variant};
use crate::packager::index::{Codec, MediaIndex};
use crate::packager::media::MediaSource;
use crate::packager::mp4::TextTrack;
use crate::packager::segment::{self, Plan, Segment};
use crate::packager::{cmaf, mp4, ts};

/// The HLS default (RFC 8216bis appendix, Apple authoring spec 6 s).
pub const DEFAULT_SEGMENT_SECONDS: f64 = 6.0;

pub struct Rendition {
    path: PathBuf,
    src: Arc<dyn MediaSource>,
    index: MediaIndex,
    plan: Plan,
    /// Continuity counters and size of each segment, known ahead.
    layout: Vec<ts::SegmentLayout>,
    /// The `<kind>` of its names: `av`, `a` or `v` from its tracks; `a2`...
    /// for a [`Rendition::part`] of another audio track.
    kind: String,
    /// The closed captions in its video, once looked for.
    captions: OnceLock<Captions>,
    /// Its file's subtitle tracks, once read.
    text_tracks: OnceLock<Vec<TextTrack>>,
}

/// Captions are looked for in the video samples of this many first
/// segments, at most this many samples, ...
const CAPTION_SCAN_SEGMENTS: usize = 2;
const CAPTION_SCAN_SAMPLES: usize = 1200;
/// ... in the first bytes of each: SEI NAL units come before the picture's
/// (H.264 7.4.1.2.3), and A/53 data is a few dozen bytes.
const CAPTION_SCAN_BYTES: usize = 4096;
/// From a source whose reads cost round trips, only the samples within
/// this many bytes of the first: a few block reads, not two segments'
/// worth of a file that is not copied (with captions in every picture,
/// as broadcast encoders put them, that still finds them).
const CAPTION_SCAN_REMOTE_SPAN: u64 = 256 << 10;

impl Rendition {
    /// Opens `path` and reads its index; segments last about
    /// `segment_seconds`, cut at keyframes.
    pub fn open(path: &Path, segment_seconds: f64) -> Result<Rendition> {
        let file = File::open(path)?;
        let index = mp4::read_index_for_plan(&file, segment::target_90k(segment_seconds))?;
        Ok(Self::from_index(
            path,
            Arc::new(file),
            index,
            segment_seconds,
        ))
    }

    /// A rendition of `index`, the index of what `src` reads; `path` names
    /// it in messages.
    pub fn from_index(
        path: &Path,
        src: Arc<dyn MediaSource>,
        index: MediaIndex,
        segment_seconds: f64,
    ) -> Rendition {
        let plan = segment::plan(&index, segment::target_90k(segment_seconds));
        if let Some(first) = plan.segments.first().filter(|s| s.video.start > 0) {
            tracing::warn!(
                "{}: the first {} video samples come before the first place a decoder \
                 can start and are left out",
                path.display(),
                first.video.start
            );
        }
        let layout = ts::layout(&index, &plan.segments);
        Rendition {
            kind: index.kind_suffix().to_string(),
            path: path.to_owned(),
            src,
            index,
            plan,
            layout,
            captions: OnceLock::new(),
            text_tracks: OnceLock::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `<kind>` of its names (`av`, `a`, `v`, `a2`...).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn index(&self) -> &MediaIndex {
        &self.index
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn segment_count(&self) -> usize {
        self.plan.segments.len()
    }

    /// Presentation duration of the whole rendition, in seconds.
    pub fn duration_seconds(&self) -> f64 {
        let segments = &self.plan.segments;
        match (segments.first(), segments.last()) {
            (Some(first), Some(last)) => (last.end_90k - first.start_90k) as f64 / 90_000.0,
            _ => 0.0,
        }
    }

    /// MPEG-TS segment `k` (0-based; its URL says `k + 1`) in memory, for
    /// tests: [`Rendition::write_segment`] is what serves and packages.
    pub fn segment(&self, k: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_segment(k, &mut out)?;
        Ok(out)
    }

    /// Segment `k` (0-based) of the plan, or why there is none.
    fn planned(&self, k: usize) -> Result<&Segment> {
        self.plan.segments.get(k).ok_or_else(|| {
            Error::NotFound(format!(
                "segment {} of {} segments",
                k + 1,
                self.segment_count()
            ))
        })
    }

    /// The length of MPEG-TS segment `k` (0-based), known before it is made.
    pub fn segment_len(&self, k: usize) -> Option<u64> {
        self.layout.get(k).map(|l| l.len_bytes)
    }

    /// The length of fMP4 media segment `k` (0-based) of `kind`'s track,
    /// known before it is made.
    pub fn fragment_len(&self, k: usize, kind: TrackKind) -> Option<u64> {
        let segment = self.plan.segments.get(k)?;
        kind.track(&self.index)?;
        Some(fmp4::fragment_len(&self.index, segment, kind))
    }

    /// Writes MPEG-TS segment `k` (0-based) to `out` as it is made, a
    /// bounded batch of samples at a time; returns its length.
    pub fn write_segment(&self, k: usize, out: &mut dyn Write) -> Result<u64> {
        self.write_segment_batched(k, out, ts::BATCH_BYTES)
    }

    pub(crate) fn write_segment_batched(
        &self,
        k: usize,
        out: &mut dyn Write,
        batch_bytes: usize,
    ) -> Result<u64> {
        let segment = self.planned(k)?;
        let input = ts::SegmentInput {
            index: &self.index,
            segment,
            offset_90k: self.plan.stream_offset_90k,
            continuity: self.layout[k].continuity,
        };
        let written = ts::write_segment(&input, &*self.src, out, batch_bytes)?;
        // The layout gave the counters of every later segment and the
        // playlist's BANDWIDTH: a segment of another size would break both.
        if written != self.layout[k].len_bytes {
            return Err(Error::corrupt(
                FourCc(*b"mdat"),
                0,
                format!(
                    "segment {} came out {written} bytes, not the {} its layout says \
                     (the source changed since it was indexed?)",
                    k + 1,
                    self.layout[k].len_bytes
                ),
            ));
        }
        Ok(written)
    }

    /// The media playlist of this rendition as rendition number `n`, with
    /// `prefix` before each segment name; with `key` (a secret's id and
    /// where its key's name goes), its segments are encrypted with AES-128
    /// under that secret's key (see [`hls::media_playlist`]).
    pub fn media_playlist(&self, n: usize, prefix: &str, key: Option<(&str, &str)>) -> String {
        hls::media_playlist(&self.plan.segments, n, &self.kind, prefix, key)
    }

    /// This rendition's entry in a master playlist.
    pub fn variant(&self) -> Variant {
        self.variant_sized(|len| len)
    }

    /// This rendition's entry in a master playlist with its I-frame
    /// playlist's, when it has video (see [`Rendition::iframe_playlist`]).
    pub fn variant_with_iframes(&self) -> Variant {
        let mut variant = self.variant();
        let Some(video) = self.index.video.as_ref() else {
            return variant;
        };
        let Codec::Video(config) = &video.codec else {
            return variant;
        };
        let lens = self.picture_lens();
        let mut peak_bps = 0;
        let mut total = 0;
        for (segment, len) in self.plan.segments.iter().zip(&lens) {
            total += len;
            peak_bps = peak_bps.max(bits_per_second(*len, hls::extinf_millis(segment)));
        }
        let span_ms = self.plan.segments.iter().map(hls::extinf_millis).sum();
        variant.iframes = Some(hls::IFrames {
            bandwidth: peak_bps,
            average_bandwidth: bits_per_second(total, span_ms),
            codecs: config.codec_string.clone(),
        });
        variant
    }

    /// The closed captions its video carries (CEA-608/708 in SEI), from
    /// the first bytes of the video samples of its first segments; none
    /// when they cannot be read.
    pub fn captions(&self) -> Captions {
        *self.captions.get_or_init(|| {
            let mut found = Captions::default();
            let Some(track) = self.index.video.as_ref() else {
                return found;
            };
            let Codec::Video(config) = &track.codec else {
                return found;
            };
            if !config.codec.is_nal() {
                return found;
            }
            let end = self
                .plan
                .segments
                .iter()
                .take(CAPTION_SCAN_SEGMENTS)
                .map(|s| s.video.end)
                .max()
                .unwrap_or(0)
                .min(CAPTION_SCAN_SAMPLES);
            let mut samples = &track.samples[..end.min(track.samples.len())];
            if self.src.reads_are_remote() {
                let first = samples.first().map_or(0, |s| s.offset);
                let near = samples
                    .iter()
                    .take_while(|s| s.offset.abs_diff(first) < CAPTION_SCAN_REMOTE_SPAN)
                    .count();
                samples = &samples[..near];
            }
            let span = |s: &crate::packager::index::Sample| {
                (s.offset, (s.size as usize).min(CAPTION_SCAN_BYTES))
            };
            let spans: Vec<(u64, usize)> = samples.iter().map(span).collect();
            self.src.will_read(&spans);
            let mut buf = vec![0; CAPTION_SCAN_BYTES];
            for (offset, len) in spans {
                if let Err(e) = self.src.read_exact_at(&mut buf[..len], offset) {
                    tracing::warn!("{}: looking for captions: {e}", self.path.display());
                    break;
                }
                found.scan_sample(config.codec, config.nal_length_size, &buf[..len]);
            }
            found
        })
    }

    /// The subtitle tracks of its file (tx3g, QuickTime text, wvtt), read
    /// when first asked for; none when they cannot be read.
    pub fn text_tracks(&self) -> &[TextTrack] {
        self.text_tracks.get_or_init(|| {
            if self.index.text_tracks == 0 {
                return Vec::new();
            }
            match mp4::read_text_tracks_from(&*self.src, self.index.file_len) {
                Ok(tracks) => {
                    for t in tracks.iter().filter(|t| t.cues.skipped > 0) {
                        tracing::warn!(
                            "{}: track {}: {} subtitle samples that cannot be read left out",
                            self.path.display(),
                            t.track_id,
                            t.cues.skipped
                        );
                    }
                    tracks
                }
                Err(e) => {
                    tracing::warn!("{}: reading its subtitle tracks: {e}", self.path.display());
                    Vec::new()
                }
            }
        })
    }

    /// Each segment's first picture's bytes (see
    /// [`ts::first_picture_len`]); 0 for one without video.
    fn picture_lens(&self) -> Vec<u64> {
        self.plan
            .segments
            .iter()
            .map(|s| ts::first_picture_len(&self.index, s).unwrap_or(0))
            .collect()
    }

    /// The I-frame playlist of this rendition as rendition number `n`;
    /// `None` without video.
    pub fn iframe_playlist(&self, n: usize, prefix: &str) -> Option<String> {
        self.index.video.as_ref()?;
        Some(hls::iframe_playlist(
            &self.plan.segments,
            &self.picture_lens(),
            n,
            &self.kind,
            prefix,
        ))
    }

    /// The same, for its segments encrypted with AES-128 (each padded).
    pub fn aes128_variant(&self) -> Variant {
        self.variant_sized(crate::packager::encrypt::encrypted_len)
    }

    /// A master playlist's entry, with segments of `size(len)` bytes.
    fn variant_sized(&self, size: fn(u64) -> u64) -> Variant {
        let mut peak_bps = 0u64;
        let mut total_bytes = 0u64;
        for (segment, layout) in self.plan.segments.iter().zip(&self.layout) {
            let bytes = size(layout.len_bytes);
            total_bytes += bytes;
            peak_bps = peak_bps.max(bits_per_second(bytes, hls::extinf_millis(segment)));
        }
        let video = self.index.video.as_ref();
        let video_config = video.and_then(|t| match &t.codec {
            Codec::Video(v) => Some(v),
            Codec::Audio(_) => None,
        });
        let frame_rate = video.filter(|t| t.samples.len() > 1).map(|t| {
            let span = t.end_dts() - t.dts(0);
            t.samples.len() as f64 * f64::from(t.timescale) / span.max(1) as f64
        });
        let span_ms = self.plan.segments.iter().map(hls::extinf_millis).sum();
        Variant {
            bandwidth: peak_bps,
            average_bandwidth: bits_per_second(total_bytes, span_ms),
            codecs: self
                .index
                .tracks()
                .map(|t| match &t.codec {
                    Codec::Video(v) => v.codec_string.clone(),
                    Codec::Audio(a) => a.codec_string.clone(),
                })
                .collect::<Vec<_>>()
                .join(","),
            resolution: video_config.map(|v| (v.width, v.height)),
            frame_rate,
            kind_suffix: self.index.kind_suffix(),
            audio_language: self.index.audio.as_ref().map(|a| a.language.clone()),
            other_audio: self
                .index
                .more_audio
                .iter()
                .enumerate()
                .map(|(i, t)| (TrackKind::Audio(i as u8 + 1).suffix(), t.language.clone()))
                .collect(),
            independent_segments: self.plan.independent_segments(&self.index),
            iframes: None,
        }
    }
}

impl Rendition {
    /// The MPEG-TS rendition of one track of this one (`kind` is `v`, `a`,
    /// `a2`...): an audio-only or video-only rendition of an AV source, or
    /// another of its audio tracks, on the same timeline and cut at the
    /// same times. None when there is no such track, or it is this one.
    pub fn part(&self, kind: &str) -> Option<Rendition> {
        if kind == self.index.kind_suffix() {
            return None;
        }
        let track = TrackKind::from_suffix(kind)?;
        let chosen = track.track(&self.index)?.clone();
        let is_video = track.is_video();
        let index = MediaIndex {
            file_len: self.index.file_len,
            video: is_video.then(|| chosen.clone()),
            audio: (!is_video).then_some(chosen),
            more_audio: Vec::new(),
            skipped: Vec::new(),
            text_tracks: self.index.text_tracks,
        };
        let segments: Vec<Segment> = self
            .plan
            .segments
            .iter()
            .map(|s| Segment {
                video: if is_video { s.video.clone() } else { 0..0 },
                audio: if is_video { 0..0 } else { track.range(s) },
                more_audio: Vec::new(),
                start_90k: s.start_90k,
                end_90k: s.end_90k,
            })
            .collect();
        let layout = ts::layout(&index, &segments);
        Some(Rendition {
            kind: kind.to_string(),
            path: self.path.clone(),
            src: Arc::clone(&self.src),
            index,
            plan: Plan {
                segments,
                stream_offset_90k: self.plan.stream_offset_90k,
            },
            layout,
            captions: OnceLock::new(),
            text_tracks: OnceLock::new(),
        })
    }

    /// What the CMAF manifests say of `kind`'s track, if there is one.
    pub fn cmaf_track(&self, kind: TrackKind) -> Option<cmaf::TrackInfo> {
        let track = kind.track(&self.index)?;
        let segments = &self.plan.segments;
        let timeline = fmp4::Timeline::new(track, self.plan.stream_offset_90k);
        let mut peak_bps = 0;
        let mut total_bytes = 0;
        let mut spans = Vec::with_capacity(segments.len());
        for segment in segments {
            let bytes = fmp4::fragment_len(&self.index, segment, kind);
            total_bytes += bytes;
            peak_bps = peak_bps.max(bits_per_second(bytes, hls::extinf_millis(segment)));
            let range = kind.range(segment);
            spans.push(if range.is_empty() {
                (0, 0)
            } else {
                timeline.span(range)
            });
        }
        let span_ms = segments.iter().map(hls::extinf_millis).sum();
        let start_90k = segments.first().map_or(0, |s| s.start_90k) + self.plan.stream_offset_90k;
        let presentation_time_offset =
            (i128::from(start_90k.max(0)) * i128::from(track.timescale) / 90_000) as u64;
        let variant = self.variant();
        let (codec, resolution, frame_rate, channels, sample_rate) = match &track.codec {
            Codec::Video(v) => (
                // HEVC is written as hvc1, whatever the source's entry.
                v.codec_string.replacen("hev1", "hvc1", 1),
                Some((v.width, v.height)),
                variant.frame_rate,
                0,
                0,
            ),
            Codec::Audio(a) => (
                a.codec_string.clone(),
                None,
                None,
                a.channels,
                a.sample_rate,
            ),
        };
        Some(cmaf::TrackInfo {
            kind,
            codec,
            bandwidth: peak_bps,
            average_bandwidth: bits_per_second(total_bytes, span_ms),
            resolution,
            frame_rate,
            language: track.language.clone(),
            channels,
            sample_rate,
            timescale: track.timescale,
            timeline: spans,
            presentation_time_offset,
            independent: match kind {
                TrackKind::Video => self.plan.independent_segments(&self.index),
                TrackKind::Audio(_) => true,
            },
            sealed: None,
            trick_bandwidth: (kind.is_video() && self.has_trick_play())
                .then(|| self.trick_bandwidth()),
        })
    }

    /// This rendition as source `n` of the CMAF manifests.
    pub fn cmaf_source(&self, n: usize) -> cmaf::Source {
        cmaf::Source {
            n,
            video: self.cmaf_track(TrackKind::Video),
            audio: TrackKind::all(&self.index)
                .into_iter()
                .filter(|t| !t.is_video())
                .filter_map(|t| self.cmaf_track(t))
                .collect(),
        }
    }

    /// The fMP4 media playlist of `kind`'s track as source `n`.
    /// The fMP4 media playlist of `kind`'s track as rendition `n`; with
    /// `sealed` (the secret's id and the key's id), its samples are
    /// encrypted (`cbcs`) with that key.
    pub fn cmaf_media_playlist(
        &self,
        n: usize,
        kind: TrackKind,
        prefix: &str,
        sealed: Option<(String, [u8; 16])>,
    ) -> Result<String> {
        let mut track = self.cmaf_track(kind).ok_or_else(|| no_track(kind))?;
        track.sealed = sealed;
        Ok(cmaf::media_playlist(&track, n, prefix))
    }

    /// The fMP4 init segment of `kind`'s track, protected with `sealing`
    /// if given.
    pub fn init_segment(
        &self,
        kind: TrackKind,
        sealing: Option<&fmp4::Sealing>,
    ) -> Result<Vec<u8>> {
        fmp4::init_segment(&self.index, kind, sealing)
    }

    /// What fMP4 media segment `k` (0-based) of `kind`'s track is made of.
    fn fragment_input(&self, k: usize, kind: TrackKind) -> Result<fmp4::FragmentInput<'_>> {
        Ok(fmp4::FragmentInput {
            index: &self.index,
            segment: self.planned(k)?,
            number: k as u32 + 1,
            kind,
            offset_90k: self.plan.stream_offset_90k,
            trick: false,
        })
    }

    /// Writes the trick-play fragment of segment `k` (0-based): its first
    /// picture, shown for the whole segment; returns its length.
    pub fn write_trick_fragment(&self, k: usize, out: &mut dyn Write) -> Result<u64> {
        let input = fmp4::FragmentInput {
            trick: true,
            ..self.fragment_input(k, TrackKind::Video)?
        };
        fmp4::write_fragment(&input, &*self.src, out, ts::BATCH_BYTES)
    }

    /// The length of the trick-play fragment of segment `k` (0-based).
    pub fn trick_fragment_len(&self, k: usize) -> Option<u64> {
        self.index.video.as_ref()?;
        let segment = self.plan.segments.get(k)?;
        Some(fmp4::trick_fragment_len(&self.index, segment))
    }

    /// Whether it has trick-play fragments: it has video, and every
    /// segment starts where a decoder can.
    pub fn has_trick_play(&self) -> bool {
        self.index.video.is_some() && self.plan.independent_segments(&self.index)
    }

    /// The fMP4 I-frame playlist of rendition `n` (its trick-play
    /// fragments); `None` without them.
    pub fn cmaf_iframe_playlist(&self, n: usize, prefix: &str) -> Option<String> {
        let track = self
            .cmaf_track(TrackKind::Video)
            .filter(|_| self.has_trick_play())?;
        Some(cmaf::iframe_playlist(&track, n, prefix))
    }

    /// Peak bitrate of the trick-play fragments.
    fn trick_bandwidth(&self) -> u64 {
        let peak = |segment: &Segment| {
            let len = fmp4::trick_fragment_len(&self.index, segment);
            bits_per_second(len, hls::extinf_millis(segment))
        };
        self.plan.segments.iter().map(peak).max().unwrap_or(0)
    }

    /// fMP4 media segment `k` (0-based) of `kind`'s track, its samples
    /// encrypted with `sealing` (`cbcs`), whole.
    pub fn sealed_fragment(
        &self,
        k: usize,
        kind: TrackKind,
        sealing: &fmp4::Sealing,
    ) -> Result<Vec<u8>> {
        fmp4::sealed_fragment(&self.fragment_input(k, kind)?, &*self.src, sealing)
    }

    /// Writes fMP4 media segment `k` (0-based) of `kind`'s track to `out`;
    /// returns its length.
    pub fn write_fragment(&self, k: usize, kind: TrackKind, out: &mut dyn Write) -> Result<u64> {
        let input = self.fragment_input(k, kind)?;
        let written = fmp4::write_fragment(&input, &*self.src, out, ts::BATCH_BYTES)?;
        let expected = fmp4::fragment_len(&self.index, input.segment, kind);
        if written != expected {
            return Err(Error::corrupt(
                FourCc(*b"mdat"),
                0,
                format!(
                    "fragment {} came out {written} bytes, not {expected}",
                    k + 1
                ),
            ));
        }
        Ok(written)
    }
}

fn no_track(kind: TrackKind) -> Error {
    Error::NotFound(format!(
        "no {} track",
        match kind {
            TrackKind::Video => "video",
            TrackKind::Audio(_) => "audio",
        }
    ))
}

/// Rounded up, so that BANDWIDTH is never below what a player measures.
fn bits_per_second(bytes: u64, millis: i64) -> u64 {
    (u128::from(bytes) * 8 * 1000).div_ceil(millis.max(1) as u128) as u64
}
