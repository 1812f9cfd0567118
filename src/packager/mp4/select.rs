//! Finishing the chosen tracks (ISO/IEC 14496-12 8.6.6 edit lists, 8.6.1
//! timing) into the [`MediaIndex`].

use super::moov::{Chosen, Movie};
use super::stbl::TrackSamples;
use crate::packager::error::{Error, FourCc, Result};
use crate::packager::index::{rescale, MediaIndex, Track};

/// The index of the movie's chosen tracks, once its fragments are read.
pub fn finish(movie: Movie, file_len: u64) -> Result<MediaIndex> {
    let Movie {
        timescale,
        fragmented,
        video,
        audio,
        mut skipped,
        ..
    } = movie;
    let mut finish_one = |chosen: Option<Chosen>| -> Result<Option<Track>> {
        let Some(c) = chosen else { return Ok(None) };
        if c.samples.samples.is_empty() {
            skipped.push(format!(
                "track {} ({}) left out: it has no samples",
                c.trak.track_id, c.trak.handler
            ));
            return Ok(None);
        }
        finish_track(c, timescale, fragmented, file_len).map(Some)
    };
    let video = finish_one(video)?;
    let audio = finish_one(audio)?;
    if video.is_none() && audio.is_none() {
        let mut why = "no audio or video track that MPEG-TS can carry".to_string();
        for s in &skipped {
            why.push_str("; ");
            why.push_str(s);
        }
        return Err(Error::Unsupported(why));
    }
    Ok(MediaIndex {
        file_len,
        video,
        audio,
        skipped,
    })
}

/// Drops samples at the end (in decode order) that are presented at or
/// after `end`, where the edit list ends the presentation. Only a suffix is
/// dropped, so no kept frame loses a reference; one sample always stays.
fn trim_after(samples: &mut TrackSamples, end: i64) {
    let list = &mut samples.samples;
    while list.len() > 1
        && list
            .last()
            .is_some_and(|s| s.dts + i64::from(s.cts_offset) >= end)
    {
        samples.end_dts = list.pop().expect("not empty").dts;
    }
    if let Some(sync) = &mut samples.sync {
        sync.retain(|&i| (i as usize) < list.len());
    }
}

/// Timestamps beyond this (ten years at 90 kHz) are taken as corrupt, so
/// that timestamp arithmetic never overflows.
const MAX_TIMESTAMP_90K: i64 = 90_000 * 86_400 * 3_660;

/// Decode times must not go backwards and every time must be in range.
fn check_timeline(samples: &TrackSamples, track_id: u32, timescale: u32, shift: i64) -> Result<()> {
    let limit = rescale(MAX_TIMESTAMP_90K, 90_000, timescale);
    let corrupt =
        |what: String| Error::corrupt(FourCc(*b"trak"), 0, format!("track {track_id}: {what}"));
    if let Some(w) = samples.samples.windows(2).find(|w| w[1].dts < w[0].dts) {
        return Err(corrupt(format!(
            "decode time goes back from {} to {}",
            w[0].dts, w[1].dts
        )));
    }
    let first = samples.samples.first().map_or(0, |s| s.dts);
    if [first, samples.end_dts, shift]
        .iter()
        .any(|t| t.abs() > limit)
        || samples.end_dts < first
    {
        return Err(corrupt("timestamps out of range".into()));
    }
    Ok(())
}

fn finish_track(c: Chosen, movie_timescale: u32, fragmented: bool, file_len: u64) -> Result<Track> {
    let (t, mut samples) = (c.trak, c.samples);
    // In a fragmented file the edit's length may cover only the moov's
    // samples (often none), so it only trims complete files.
    if !fragmented && t.edit.media_duration_movie_units > 0 {
        let duration = i64::try_from(t.edit.media_duration_movie_units).unwrap_or(i64::MAX / 2);
        let end = t
            .edit
            .media_time
            .saturating_add(rescale(duration, movie_timescale, t.timescale));
        trim_after(&mut samples, end);
    }
    for (i, s) in samples.samples.iter().enumerate() {
        if s.offset.saturating_add(u64::from(s.size)) > file_len {
            return Err(Error::corrupt(
                FourCc(*b"mdat"),
                s.offset,
                format!(
                    "sample {} of track {} ({} bytes) lies past the end of the \
                     {file_len}-byte file: the file is truncated",
                    i + 1,
                    t.track_id,
                    s.size
                ),
            ));
        }
    }
    if t.edit.ignored_edits {
        tracing::warn!(
            "track {}: only the first edit of its edit list is applied",
            t.track_id
        );
    }
    let empty = rescale(
        i64::try_from(t.edit.empty_movie_units).unwrap_or(i64::MAX / 2),
        movie_timescale,
        t.timescale,
    );
    check_timeline(&samples, t.track_id, t.timescale, empty - t.edit.media_time)?;
    let min_cts = samples
        .samples
        .iter()
        .map(|s| s.cts_offset)
        .min()
        .unwrap_or(0);
    Ok(Track {
        track_id: t.track_id,
        timescale: t.timescale,
        codec: t.codec.expect("chosen tracks have a codec"),
        samples: samples.samples,
        sync: samples.sync,
        end_dts: samples.end_dts,
        presentation_shift: empty - t.edit.media_time,
        decode_delay: i64::from(min_cts.min(0)).abs(),
    })
}
