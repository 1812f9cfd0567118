//! Segment boundaries: a pure function of the index and the target duration,
//! so any segment can be built alone, in any order, with the same bytes.
//!
//! With video, a segment starts at the first video sync sample at or after
//! each multiple of the target duration (counted from the first video
//! sample); audio is cut at the same presentation times. Audio-only sources
//! are cut at the first audio frame at or after each multiple.

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

pub fn plan(index: &MediaIndex, target_90k: i64) -> Plan {
    let target_90k = target_90k.max(1);
    let (leader, cuts) = match (&index.video, &index.audio) {
        (Some(v), _) => (v, video_cuts(v, target_90k)),
        (None, Some(a)) => (a, audio_cuts(a, target_90k)),
        (None, None) => unreachable!("an index has at least one track"),
    };
    let cut_times: Vec<i64> = cuts.iter().map(|&i| leader.pts_90k(i)).collect();
    let start = index
        .tracks()
        .map(|t| t.pts_90k(0))
        .min()
        .expect("at least one track");
    let end = index
        .tracks()
        .map(Track::end_pts_90k)
        .max()
        .expect("at least one track")
        .max(cut_times.last().copied().unwrap_or(start) + 1);
    let mut segments = Vec::with_capacity(cuts.len());
    for (k, &first) in cuts.iter().enumerate() {
        let next = cuts.get(k + 1).copied();
        let range_of = |t: &Track| -> Range<usize> {
            let from = if k == 0 {
                0
            } else {
                first_at_or_after(t, cut_times[k])
            };
            let to = next.map_or(t.samples.len(), |_| first_at_or_after(t, cut_times[k + 1]));
            from..to.max(from)
        };
        let leader_range = first..next.unwrap_or(leader.samples.len());
        let (video, audio) = match (&index.video, &index.audio) {
            (Some(_), Some(a)) => (leader_range, range_of(a)),
            (Some(_), None) => (leader_range, 0..0),
            _ => (0..0, leader_range),
        };
        segments.push(Segment {
            video,
            audio,
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

/// Sample indexes (decode order) where video segments start.
fn video_cuts(video: &Track, target_90k: i64) -> Vec<usize> {
    let origin = video.pts_90k(0);
    let mut cuts = vec![0];
    let mut last_time = origin;
    let mut next_time = origin + target_90k;
    let mut consider = |i: usize| {
        let t = video.pts_90k(i);
        if i > 0 && t >= next_time && t > last_time {
            cuts.push(i);
            last_time = t;
            next_time = origin + ((t - origin) / target_90k + 1) * target_90k;
        }
    };
    match &video.sync {
        Some(list) => list.iter().for_each(|&i| consider(i as usize)),
        None => (0..video.samples.len()).for_each(consider),
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
