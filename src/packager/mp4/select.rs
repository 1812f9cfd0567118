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
use crate::packager::Threads;

/// Chosen tracks with at least this many samples between them are finished
/// on two threads, the video track on its own: its tables and its NAL unit
/// headers take as long as the other tracks' tables together.
const PARALLEL_SAMPLES: u64 = 100_000;

/// The index of the movie's chosen tracks, once its fragments are read:
/// each track's tables expanded (where they are not yet) and its samples
/// checked and scanned.
pub fn finish(
    movie: Movie,
    src: &dyn ReadAt,
    file_len: u64,
    cut_target_90k: Option<i64>,
    threads: Threads,
) -> Result<MediaIndex> {
    let Movie {
        timescale,
        fragmented,
        video,
        audio,
        more_audio,
        mut skipped,
        text,
        ..
    } = movie;
    let finish_one = |mut c: Chosen| -> Result<std::result::Result<Track, String>> {
        c.expand(src, file_len)?;
        if c.samples.samples.is_empty() {
            return Ok(Err(format!(
                "track {} ({}) left out: it has no samples",
                c.trak.track_id, c.trak.handler
            )));
        }
        let reading = Reading {
            src,
            file_len,
            cut_target_90k,
            threads,
        };
        finish_track(c, timescale, fragmented, &reading).map(Ok)
    };
    let samples = |c: &Chosen| c.trak.declared_samples.max(c.samples.samples.len() as u64);
    let total: u64 = video
        .iter()
        .chain(audio.iter())
        .chain(more_audio.iter())
        .map(samples)
        .sum();
    let others: Vec<Chosen> = audio.into_iter().chain(more_audio).collect();
    let shared = threads.share(total as usize, PARALLEL_SAMPLES as usize);
    let (video, others) = if video.is_some() && !others.is_empty() && shared {
        std::thread::scope(|scope| {
            let video = scope.spawn(|| video.map(finish_one).transpose());
            let others: Vec<_> = others.into_iter().map(finish_one).collect();
            let video = video
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (video, others)
        })
    } else {
        let video = video.map(finish_one).transpose();
        (video, others.into_iter().map(finish_one).collect())
    };
    // Failures in track order, whichever thread met them.
    let mut keep = |finished: Result<_>| -> Result<Option<Track>> {
        match finished? {
            Ok(track) => Ok(Some(track)),
            Err(why) => {
                skipped.push(why);
                Ok(None)
            }
        }
    };
    let video = match video? {
        Some(finished) => keep(Ok(finished))?,
        None => None,
    };
    let mut audio_tracks = Vec::with_capacity(others.len());
    for finished in others {
        audio_tracks.extend(keep(finished)?);
    }
    // The first audio track kept leads (the chosen one may have had no
    // samples).
    let (audio, more_audio) = if audio_tracks.is_empty() {
        (None, audio_tracks)
    } else {
        let first = audio_tracks.remove(0);
        (Some(first), audio_tracks)
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
        text_tracks: text.len() as u32,
    };
    index.validate()?;
    Ok(index)
}

/// Where a track's samples are read from, and how.
struct Reading<'a> {
    src: &'a dyn ReadAt,
    file_len: u64,
    /// The target duration of the plan the index is for, if known (see
    /// [`access_units::Cuts`]).
    cut_target_90k: Option<i64>,
    threads: Threads,
}

/// What the video samples' NAL unit headers say (nothing for audio).
/// `pts_90k` gives a sample's presentation time as the plan reads it.
fn scan_samples(
    codec: &Codec,
    track_id: u32,
    samples: &TrackSamples,
    pts_90k: &(dyn Fn(usize) -> i64 + Sync),
    reading: &Reading,
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
    let sync = samples.sync.as_deref();
    let cuts = reading.cut_target_90k.map(|target_90k| access_units::Cuts {
        target_90k,
        pts_90k,
    });
    let scan = access_units::scan(
        reading.src,
        reading.file_len,
        v,
        &samples.samples,
        sync,
        cuts.as_ref(),
        reading.threads,
    )?;
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
    let (list, times) = (&mut samples.samples, &mut samples.times);
    let mut len = list.len();
    while len > 1 && times.dts(len - 1) + i64::from(list[len - 1].cts_offset) >= end {
        len -= 1;
    }
    list.truncate(len);
    times.truncate(len);
    if let Some(sync) = &mut samples.sync {
        sync.retain(|&i| (i as usize) < len);
    }
}

fn finish_track(
    c: Chosen,
    movie_timescale: u32,
    fragmented: bool,
    reading: &Reading,
) -> Result<Track> {
    let (src, file_len) = (reading.src, reading.file_len);
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
    samples.times.compact();
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
    let presentation_shift = empty - t.edit.media_time;
    // As `Track::pts_90k` will give it.
    let pts_90k = |i: usize| {
        let cts = i64::from(samples.samples[i].cts_offset);
        rescale(
            samples.times.dts(i) + cts + presentation_shift,
            t.timescale,
            90_000,
        )
    };
    let scan = scan_samples(&codec, t.track_id, &samples, &pts_90k, reading)?;
    let codec = complete_parameter_sets(codec, t.track_id, &scan, &samples, src, file_len)?;
    Ok(Track {
        track_id: t.track_id,
        timescale: t.timescale,
        language: t.language.clone(),
        codec,
        samples: samples.samples,
        times: samples.times,
        sync: samples.sync,
        random_access: scan.random_access,
        nal_units: scan.nal_units,
        presentation_shift,
        decode_delay: i64::from(min_cts.min(0)).abs(),
    })
}
