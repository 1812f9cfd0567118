//! Segment boundaries: a pure function of the index and the target duration,
//! so any segment can be built alone, in any order, with the same bytes.
//!
//! With video, a segment starts at the first video random access point (see
//! [`Track::random_access`]) at or after each multiple of the target
//! duration, counted from the first one; audio is cut at the same
//! presentation times. Video samples before the first random access point
//! cannot be decoded and are left out (the audio before it is kept).
//! Audio-only sources are cut at the first audio frame at or after each
//! multiple.

use std::ops::Range;

use crate::packager::index::{MediaIndex, Track};

/// Timestamps are shifted by this much so that none is negative and players
/// see the conventional 1.4 s start (ffmpeg's default mux delay, doubled).
const BASE_OFFSET_90K: i64 = 126_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Samples of the video track, in decode order.
    pub video: Range<usize>,
    pub audio: Range<usize>,
    /// Samples of each of the other audio tracks (`MediaIndex::more_audio`),
    /// cut at the same times as `audio`.
    pub more_audio: Vec<Range<usize>>,
    /// Presentation interval of the segment, 90 kHz, before the stream offset.
    pub start_90k: i64,
    pub end_90k: i64,
}

impl Segment {
    pub fn duration_90k(&self) -> i64 {
        self.end_90k - self.start_90k
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub segments: Vec<Segment>,
    /// Added to every PTS, DTS and PCR of every segment.
    pub stream_offset_90k: i64,
}

/// A target duration of `seconds`, as plans take it.
pub fn target_90k(seconds: f64) -> i64 {
    (seconds * 90_000.0).round() as i64
}

pub fn plan(index: &MediaIndex, target_90k: i64) -> Plan {
    let target_90k = target_90k.max(1);
    let (leader, cuts) = match (&index.video, &index.audio) {
        (Some(v), _) => (v, video_cuts(v, target_90k)),
        (None, Some(a)) => (a, audio_cuts(a, target_90k)),
        (None, None) => unreachable!("an index has at least one track"),
    };
    let cut_times: Vec<i64> = cuts.iter().map(|&i| leader.pts_90k(i)).collect();
    let start = index
        .audio
        .iter()
        .map(|a| a.pts_90k(0))
        .chain(cut_times.first().copied())
        .min()
        .expect("at least one track");
    let end = index
        .tracks()
        .map(Track::end_pts_90k)
        .max()
        .expect("at least one track")
        .max(cut_times.last().copied().unwrap_or(start) + 1);
    // Where each segment after the first starts in each audio track.
    let starts_in = |t: &Track| -> Vec<usize> {
        cut_times[1..]
            .iter()
            .map(|&time| first_at_or_after(t, time))
            .collect()
    };
    // (An audio leader's segments are its cuts.)
    let audio_starts = match (&index.video, &index.audio) {
        (Some(_), Some(a)) => starts_in(a),
        _ => Vec::new(),
    };
    let more_starts: Vec<Vec<usize>> = index.more_audio.iter().map(starts_in).collect();
    let mut segments = Vec::with_capacity(cuts.len());
    for (k, &first) in cuts.iter().enumerate() {
        let next = cuts.get(k + 1).copied();
        let range_in = |t: &Track, starts: &[usize]| -> Range<usize> {
            let from = if k == 0 { 0 } else { starts[k - 1] };
            let to = starts.get(k).copied().unwrap_or(t.samples.len());
            from..to.max(from)
        };
        let leader_range = first..next.unwrap_or(leader.samples.len());
        let (video, audio) = match (&index.video, &index.audio) {
            (Some(_), Some(a)) => (leader_range, range_in(a, &audio_starts)),
            (Some(_), None) => (leader_range, 0..0),
            _ => (0..0, leader_range),
        };
        segments.push(Segment {
            video,
            audio,
            more_audio: index
                .more_audio
                .iter()
                .zip(&more_starts)
                .map(|(t, starts)| range_in(t, starts))
                .collect(),
            start_90k: if k == 0 { start } else { cut_times[k] },
            end_90k: cut_times.get(k + 1).copied().unwrap_or(end),
        });
    }
    let first_dts = index.tracks().map(|t| t.dts_90k(0)).min().unwrap_or(0);
    Plan {
        segments,
        stream_offset_90k: BASE_OFFSET_90K + (-first_dts).max(0),
    }
}

impl Plan {
    /// Whether every segment's video starts at a random access point (the
    /// first frame of an audio-only segment always is one).
    pub fn independent_segments(&self, index: &MediaIndex) -> bool {
        let Some(video) = &index.video else {
            return true;
        };
        self.segments
            .iter()
            .all(|s| s.video.is_empty() || video.is_random_access(s.video.start))
    }
}

/// Index of the first sample of an audio track presented at or after `t`.
fn first_at_or_after(track: &Track, t: i64) -> usize {
    let mut lo = 0;
    let mut hi = track.samples.len();
    while lo < hi {
        let mid = (lo + hi) / 2;
        if track.pts_90k(mid) < t {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Sample indexes (decode order) where video segments start; the first is
/// the first place a decoder can start.
fn video_cuts(video: &Track, target_90k: i64) -> Vec<usize> {
    let mut candidates = video.cut_candidates();
    // A validated video track has somewhere to start.
    let first = candidates.next().unwrap_or(0);
    let origin = video.pts_90k(first);
    let mut cuts = vec![first];
    let mut last_time = origin;
    let mut next_time = origin + target_90k;
    for i in candidates {
        let t = video.pts_90k(i);
        if t >= next_time && t > last_time {
            cuts.push(i);
            last_time = t;
            next_time = origin + ((t - origin) / target_90k + 1) * target_90k;
        }
    }
    cuts
}

fn audio_cuts(audio: &Track, target_90k: i64) -> Vec<usize> {
    let origin = audio.pts_90k(0);
    let mut cuts = vec![0];
    let mut next_time = origin + target_90k;
    for i in 1..audio.samples.len() {
        let t = audio.pts_90k(i);
        if t >= next_time {
            cuts.push(i);
            next_time = origin + ((t - origin) / target_90k + 1) * target_90k;
        }
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packager::index::{Codec, Sample, Timeline, VideoCodec, VideoConfig};

    fn timeline(count: u32, duration: u32) -> Timeline {
        let mut times = Timeline::default();
        times.push(count, duration).expect("small");
        times
    }

    /// 30 video frames at 30 fps, sync samples every 5, of which
    /// `random_access` a decoder can start at.
    fn video_index(random_access: Vec<u32>) -> MediaIndex {
        let samples = (0..30)
            .map(|i| Sample {
                offset: i * 10,
                size: 10,
                cts_offset: 0,
            })
            .collect();
        let video = Track {
            track_id: 1,
            timescale: 30,
            language: "und".into(),
            codec: Codec::Video(VideoConfig {
                codec: VideoCodec::Hevc,
                nal_length_size: 4,
                parameter_sets: Vec::new(),
                width: 16,
                height: 16,
                codec_string: "hvc1".into(),
                config: Vec::new(),
            }),
            samples,
            times: timeline(30, 1),
            sync: Some(vec![0, 5, 10, 15, 20, 25]),
            random_access,
            nal_units: Vec::new(),
            presentation_shift: 0,
            decode_delay: 0,
        };
        let index = MediaIndex {
            file_len: 300,
            video: Some(video),
            audio: None,
            more_audio: Vec::new(),
            skipped: Vec::new(),
            text_tracks: 0,
        };
        index.validate().unwrap();
        index
    }

    #[test]
    fn segments_start_only_at_random_access_points_and_not_before_the_first() {
        let index = video_index(vec![5, 15, 25]);
        // A target of 5 frames: every sync sample would do, were it a
        // random access point.
        let plan = plan(&index, 15_000);
        let starts: Vec<usize> = plan.segments.iter().map(|s| s.video.start).collect();
        assert_eq!(starts, [5, 15, 25], "samples 0..5 cannot be decoded");
        assert_eq!(plan.segments[0].start_90k, 15_000);
        assert_eq!(plan.segments.last().unwrap().video.end, 30);
        assert!(plan.independent_segments(&index));
    }

    #[test]
    fn without_random_access_points_segments_start_at_sync_samples_and_are_not_independent() {
        let index = video_index(Vec::new());
        let plan = plan(&index, 15_000);
        let starts: Vec<usize> = plan.segments.iter().map(|s| s.video.start).collect();
        assert_eq!(starts, [0, 5, 10, 15, 20, 25]);
        assert!(!plan.independent_segments(&index));
    }

    #[test]
    fn a_sync_cursor_agrees_with_the_sync_table_from_any_start() {
        let index = video_index(vec![5, 15, 25]);
        let mut video = index.video.unwrap();
        for sync in [
            Some(vec![0, 5, 10, 15, 20, 25]),
            Some(vec![7]),
            Some(vec![]),
            None,
        ] {
            video.sync = sync;
            for start in 0..30 {
                let mut cursor = video.sync_from(start);
                for i in start..30 {
                    assert_eq!(
                        cursor.is_sync(i),
                        video.is_sync(i),
                        "{:?} from {start}, sample {i}",
                        video.sync
                    );
                }
            }
        }
    }
}
