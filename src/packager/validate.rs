//! The checks every [`MediaIndex`] passes before it is planned or muxed:
//! the invariants the segment planner and the MPEG-TS writer (ISO/IEC
//! 13818-1) rely on, over what the MP4 reader (ISO/IEC 14496-12) produces.
//!
//! One validator for an index just read from a file and for one decoded
//! from the cache, so that a cached index is never trusted more than a
//! parsed one: a length size of 0 would make the Annex B writer loop, an
//! empty track would make the planner panic.

use crate::packager::error::{Error, FourCc, Result};
use crate::packager::index::{
    rescale, sample_budget, AudioCodec, AudioConfig, Codec, MediaIndex, Sample, Track, VideoConfig,
};

/// Timestamps beyond this (ten years at 90 kHz) are taken as corrupt, so
/// that timestamp arithmetic never overflows.
pub const MAX_TIMESTAMP_90K: i64 = 90_000 * 86_400 * 3_660;

/// Parameter sets an avcC or hvcC may carry into the index, and their
/// length (a 16-bit field in both, 14496-15 5.3.3.1 and 8.3.3.1).
const MAX_PARAMETER_SETS: usize = 64;
const MAX_PARAMETER_SET_BYTES: usize = u16::MAX as usize;

/// Longest RFC 6381 codec string we write into a playlist.
const MAX_CODEC_STRING: usize = 64;

/// Reasons for left-out tracks kept in an index, and their length.
const MAX_SKIPPED: usize = 64;
const MAX_SKIPPED_BYTES: usize = 1024;

/// Checks `index`; the error names the first thing wrong.
pub fn validate(index: &MediaIndex) -> Result<()> {
    if index.video.is_none() && index.audio.is_none() {
        return Err(invalid(None, "no video or audio track"));
    }
    let samples: u64 = index.all_tracks().map(|t| t.samples.len() as u64).sum();
    let budget = sample_budget(index.file_len);
    if samples > budget {
        return Err(invalid(
            None,
            format!("{samples} samples, more than the {budget} of its file"),
        ));
    }
    if let Some(t) = &index.video {
        let Codec::Video(config) = &t.codec else {
            return Err(invalid(Some(t), "the video track has an audio codec"));
        };
        check_video_config(t, config)?;
        check_track(t, index.file_len)?;
        check_video_samples(t, config)?;
    }
    if index.more_audio.len() > crate::packager::index::MAX_MORE_AUDIO
        || (index.audio.is_none() && !index.more_audio.is_empty())
    {
        return Err(invalid(None, "bad list of more audio tracks"));
    }
    for t in index.audio.iter().chain(&index.more_audio) {
        let Codec::Audio(config) = &t.codec else {
            return Err(invalid(Some(t), "the audio track has a video codec"));
        };
        check_audio_config(t, config)?;
        check_track(t, index.file_len)?;
        if !t.random_access.is_empty() || !t.nal_units.is_empty() {
            return Err(invalid(Some(t), "audio with video sample lists"));
        }
    }
    if index.skipped.len() > MAX_SKIPPED
        || index.skipped.iter().any(|s| s.len() > MAX_SKIPPED_BYTES)
    {
        return Err(invalid(
            None,
            "too many or too long reasons for left-out tracks",
        ));
    }
    Ok(())
}

fn invalid(track: Option<&Track>, what: impl std::fmt::Display) -> Error {
    let what = match track {
        Some(t) => format!("track {}: {what}", t.track_id),
        None => what.to_string(),
    };
    Error::corrupt(FourCc(*b"trak"), 0, what)
}

fn check_track(t: &Track, file_len: u64) -> Result<()> {
    if t.timescale == 0 {
        return Err(invalid(Some(t), "timescale 0"));
    }
    if t.samples.is_empty() {
        return Err(invalid(Some(t), "no samples"));
    }
    check_sample_ranges(t.track_id, &t.samples, file_len)?;
    check_timeline(t)?;
    if let Some(sync) = &t.sync {
        check_index_list(t, sync, "sync sample")?;
    }
    Ok(())
}

/// Every sample lies inside the file.
pub fn check_sample_ranges(track_id: u32, samples: &[Sample], file_len: u64) -> Result<()> {
    for (i, s) in samples.iter().enumerate() {
        if s.offset.saturating_add(u64::from(s.size)) > file_len {
            return Err(Error::corrupt(
                FourCc(*b"mdat"),
                s.offset,
                format!(
                    "sample {} of track {track_id} ({} bytes) lies past the end of the \
                     {file_len}-byte file: the file is truncated",
                    i + 1,
                    s.size
                ),
            ));
        }
    }
    Ok(())
}

/// Decode times do not go backwards, every time is in range, and the
/// decode delay is the one the composition offsets call for.
fn check_timeline(t: &Track) -> Result<()> {
    let limit = rescale(MAX_TIMESTAMP_90K, 90_000, t.timescale);
    if t.times.len() != t.samples.len() {
        return Err(invalid(
            Some(t),
            format!(
                "{} decode times for {} samples",
                t.times.len(),
                t.samples.len()
            ),
        ));
    }
    if let Some((a, b)) = t.times.first_step_back() {
        return Err(invalid(
            Some(t),
            format!("decode time goes back from {a} to {b}"),
        ));
    }
    let first = t.dts(0);
    let last = t.dts(t.samples.len() - 1);
    if [first, t.end_dts(), t.presentation_shift]
        .iter()
        .any(|v| v.unsigned_abs() > limit.unsigned_abs())
        || t.end_dts() < last
    {
        return Err(invalid(Some(t), "timestamps out of range"));
    }
    let min_cts = t.samples.iter().map(|s| s.cts_offset).min().unwrap_or(0);
    if t.decode_delay != i64::from(min_cts.min(0)).abs() {
        return Err(invalid(
            Some(t),
            format!(
                "decode delay {} does not match its composition offsets",
                t.decode_delay
            ),
        ));
    }
    Ok(())
}

/// A list of sample indexes: strictly ascending, each a sample of `t`.
fn check_index_list(t: &Track, list: &[u32], what: &str) -> Result<()> {
    if list.windows(2).any(|w| w[1] <= w[0]) {
        return Err(invalid(Some(t), format!("{what} list not ascending")));
    }
    if list.last().is_some_and(|&i| i as usize >= t.samples.len()) {
        return Err(invalid(Some(t), format!("{what} past the last sample")));
    }
    Ok(())
}

/// The random access points are sync samples; segments have somewhere to
/// start; NAL unit counts are there exactly when lengths are not 4 bytes,
/// and each fits in its sample.
fn check_video_samples(t: &Track, v: &VideoConfig) -> Result<()> {
    check_index_list(t, &t.random_access, "random access point")?;
    if t.random_access.iter().any(|&i| !t.is_sync(i as usize)) {
        return Err(invalid(Some(t), "a random access point is no sync sample"));
    }
    if t.cut_candidates().next().is_none() {
        return Err(invalid(Some(t), "no sync sample to start a segment at"));
    }
    let want = if v.nal_length_size == 4 || !v.codec.is_nal() {
        0
    } else {
        t.samples.len()
    };
    if t.nal_units.len() != want {
        return Err(invalid(Some(t), "NAL unit counts do not match the samples"));
    }
    let len_size = u64::from(v.nal_length_size);
    let fits = |(s, &n): (&Sample, &u32)| u64::from(n) * len_size <= u64::from(s.size);
    if !t.samples.iter().zip(&t.nal_units).all(fits) {
        return Err(invalid(Some(t), "more NAL units than a sample can hold"));
    }
    Ok(())
}

fn check_video_config(t: &Track, v: &VideoConfig) -> Result<()> {
    if v.codec.is_nal() && ![1, 2, 4].contains(&v.nal_length_size) {
        return Err(invalid(
            Some(t),
            format!("NAL length size {} (1, 2 or 4)", v.nal_length_size),
        ));
    }
    if v.parameter_sets.len() > MAX_PARAMETER_SETS
        || v.parameter_sets
            .iter()
            .any(|ps| ps.is_empty() || ps.len() > MAX_PARAMETER_SET_BYTES)
    {
        return Err(invalid(Some(t), "bad parameter sets"));
    }
    check_codec_string(t, &v.codec_string)
}

fn check_audio_config(t: &Track, a: &AudioConfig) -> Result<()> {
    // The ADTS header's fields (ISO/IEC 13818-7 6.2): a 2-bit profile, a
    // 4-bit sampling index of which 0..=12 are rates, a 3-bit channel
    // configuration.
    if let AudioCodec::Aac {
        profile,
        sampling_index,
        channel_config,
    } = a.codec
    {
        if profile > 3 || sampling_index > 12 || channel_config > 7 {
            return Err(invalid(Some(t), "AAC configuration out of range"));
        }
    }
    check_codec_string(t, &a.codec_string)
}

/// It goes between quotes in a master playlist (RFC 8216 4.3.4.2), so it
/// must be a plain RFC 6381 token.
fn check_codec_string(t: &Track, s: &str) -> Result<()> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if s.is_empty() || s.len() > MAX_CODEC_STRING || !s.chars().all(plain) {
        return Err(invalid(Some(t), format!("codec string {s:?}")));
    }
    Ok(())
}
