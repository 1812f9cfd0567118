//! Finishing the chosen tracks (ISO/IEC 14496-12 8.6.6 edit lists, 8.6.1
//! timing) into the [`MediaIndex`].

use super::access_units::{self, Scan};
use super::moov::{Chosen, Movie};
use super::source::ReadAt;
use super::stbl::TrackSamples;
use super::stsd;
use crate::packager::error::{Error, Result};
use crate::packager::index::{rescale, Codec, MediaIndex, Track};
use crate::packager::validate::check_sample_ranges;

/// The index of the movie's chosen tracks, once its fragments are read.
pub fn finish(movie: Movie, src: &dyn ReadAt, file_len: u64) -> Result<MediaIndex> {
    let Movie {
        timescale,
        fragmented,
        video,
        audio,
        more_audio,
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
        finish_track(c, timescale, fragmented, src, file_len).map(Some)
    };
    let video = finish_one(video)?;
    let audio = finish_one(audio)?;
    let mut more = Vec::with_capacity(more_audio.len());
    for chosen in more_audio {
        more.extend(finish_one(Some(chosen))?);
    }
    // The first audio track kept leads when the first chosen had no samples.
    let (audio, more_audio) = match (audio, more.is_empty()) {
        (None, false) => (Some(more.remove(0)), more),
        (audio, _) => (audio, more),
    };
    if video.is_none() && audio.is_none() {
        let mut why = "no audio or video track that MPEG-TS can carry".to_string();
        for s in &skipped {
            why.push_str("; ");
            why.push_str(s);
        }
        return Err(Error::Unsupported(why));
    }
    let index = MediaIndex {
        file_len,
        video,
        audio,
        more_audio,
        skipped,
    };
    index.validate()?;
    Ok(index)
}

/// What the video samples' NAL unit headers say (nothing for audio).
fn scan_samples(
    codec: &Codec,
    track_id: u32,
    samples: &TrackSamples,
    src: &dyn ReadAt,
    file_len: u64,
) -> Result<Scan> {
    let Codec::Video(v) = codec else {
        return Ok(Scan {
            random_access: Vec::new(),
            nal_units: Vec::new(),
        });
    };
    if !v.codec.is_nal() {
        // AV1 and VP9: a sync sample is a key frame a decoder can start at.
        let all = || (0..samples.samples.len() as u32).collect();
        return Ok(Scan {
            random_access: samples.sync.clone().unwrap_or_else(all),
            nal_units: Vec::new(),
        });
    }
    let scan = access_units::scan(src, file_len, v, &samples.samples, samples.sync.as_deref())?;
    if scan.random_access.is_empty() {
        tracing::warn!(
            "track {track_id}: no sync sample is an IDR picture (or a CRA without RASL \
             pictures): segments start at sync samples and may not decode alone"
        );
    }
    Ok(scan)
}

/// An avc3 or hev1 track whose configuration box lacks parameter sets
/// keeps them in its samples: those of its first random access point move
/// into the configuration, where avc1 and hvc1 (which Apple's players ask
/// for) want them, and where MPEG-TS segments take them from for each of
/// their key frames.
fn complete_parameter_sets(
    codec: Codec,
    track_id: u32,
    scan: &Scan,
    samples: &TrackSamples,
    src: &dyn ReadAt,
    file_len: u64,
) -> Result<Codec> {
    let Codec::Video(v) = codec else {
        return Ok(codec);
    };
    if !v.codec.is_nal() || stsd::has_parameter_sets(v.codec, &v.parameter_sets) {
        return Ok(Codec::Video(v));
    }
    let first = scan.random_access.first().map_or(0, |&i| i as usize);
    let sets = access_units::in_band_parameter_sets(src, file_len, &v, &samples.samples[first])?;
    if !stsd::has_parameter_sets(v.codec, &sets) {
        tracing::warn!(
            "track {track_id}: parameter sets are neither in its sample entry nor before \
             its first picture; segments may not decode"
        );
        return Ok(Codec::Video(v));
    }
    Ok(Codec::Video(stsd::with_parameter_sets(v, sets)?))
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

fn finish_track(
    c: Chosen,
    movie_timescale: u32,
    fragmented: bool,
    src: &dyn ReadAt,
    file_len: u64,
) -> Result<Track> {
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
    check_sample_ranges(t.track_id, &samples.samples, file_len)?;
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
    let min_cts = samples
        .samples
        .iter()
        .map(|s| s.cts_offset)
        .min()
        .unwrap_or(0);
    let codec = t.codec.expect("chosen tracks have a codec");
    let scan = scan_samples(&codec, t.track_id, &samples, src, file_len)?;
    let codec = complete_parameter_sets(codec, t.track_id, &scan, &samples, src, file_len)?;
    Ok(Track {
        track_id: t.track_id,
        timescale: t.timescale,
        language: t.language.clone(),
        codec,
        samples: samples.samples,
        sync: samples.sync,
        random_access: scan.random_access,
        nal_units: scan.nal_units,
        end_dts: samples.end_dts,
        presentation_shift: empty - t.edit.media_time,
        decode_delay: i64::from(min_cts.min(0)).abs(),
    })
}
