//! Subtitle renditions from sidecar files: `<base>[.<lang>][.forced].vtt`
//! or `.srt` beside the sources (see [`Request::subtitle_base`]). They are
//! listed in HLS masters (TS and fMP4) and DASH MPDs, and cut into WebVTT
//! segments along the first rendition's segments. All of it is kept in
//! memory only: made from a small text file in well under a millisecond.

use std::sync::Arc;

use super::{from_memory, last_modified, Answer, Origin, OriginError, PLAYLIST_TYPE};
use crate::cache::{SourceId, State};
use crate::packager::hls;
use crate::packager::subtitles::{self, Cues, Format, Sidecar};
use crate::packager::url::{Request, Target};

/// A sidecar larger than this is not read (a feature film's subtitles
/// are 50-150 kB).
const MAX_SIDECAR_BYTES: u64 = 16 << 20;

pub const WEBVTT_TYPE: &str = "text/vtt; charset=utf-8";

/// A sidecar of a request's sources.
pub(super) struct SubtitleTrack {
    pub sidecar: Sidecar,
    pub source: SourceId,
}

impl SubtitleTrack {
    fn entry(&self) -> hls::Subtitles {
        hls::Subtitles {
            tag: self.sidecar.tag(),
            language: self.sidecar.language.clone(),
            forced: self.sidecar.forced,
        }
    }
}

impl Origin {
    /// The sidecars of `base`, one for each tag (a WebVTT file before an
    /// SRT one of the same language), in tag order.
    pub(super) fn subtitle_tracks(&self, base: &str) -> Vec<SubtitleTrack> {
        let (dir, stem) = match base.rsplit_once('/') {
            Some((dir, stem)) => (format!("{dir}/"), stem),
            None => (String::new(), base),
        };
        let mut tracks: Vec<SubtitleTrack> = Vec::new();
        for name in self.inputs.sidecars(base) {
            let Some(sidecar) = Sidecar::of(stem, &name) else {
                continue;
            };
            let tag = sidecar.tag();
            let same = tracks.iter().position(|t| t.sidecar.tag() == tag);
            if same.is_some_and(|at| tracks[at].sidecar.format == Format::WebVtt) {
                continue;
            }
            let Ok(source) = self.inputs.resolve(&format!("{dir}{name}")) else {
                continue;
            };
            let track = SubtitleTrack { sidecar, source };
            match same {
                Some(at) => tracks[at] = track,
                None => tracks.push(track),
            }
        }
        tracks.sort_by_key(|t| t.sidecar.tag());
        tracks
    }

    /// What a master's cache key says of its subtitles: each sidecar's tag
    /// and identity (empty when it has none).
    pub(super) fn subtitles_key_part(tracks: &[SubtitleTrack]) -> String {
        tracks
            .iter()
            .map(|t| format!("|sub:{}={}", t.sidecar.tag(), t.source.key_part()))
            .collect()
    }

    /// The master entries of the sidecars of `tracks` that can be read;
    /// one that cannot is left out, with a warning.
    pub(super) fn subtitle_entries(&self, tracks: &[SubtitleTrack]) -> Vec<hls::Subtitles> {
        tracks
            .iter()
            .filter(|t| match self.cues(t) {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!("{e}: left out of the master");
                    false
                }
            })
            .map(SubtitleTrack::entry)
            .collect()
    }

    /// The cues of a sidecar, SRT converted; bad cues skipped, with a
    /// warning.
    fn cues(&self, track: &SubtitleTrack) -> Result<Cues, OriginError> {
        let rel = &track.source.rel;
        let unreadable = |why: String| OriginError::Unprocessable(format!("{rel}: {why}"));
        let len = track.source.size;
        if len > MAX_SIDECAR_BYTES {
            return Err(unreadable(format!(
                "{len} bytes, more than a subtitle file has ({MAX_SIDECAR_BYTES} at most)"
            )));
        }
        let input = self.inputs.open(&track.source)?;
        let mut bytes = vec![0; len as usize];
        input
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| OriginError::Internal(format!("reading {rel}: {e}")))?;
        let parsed = match track.sidecar.format {
            Format::WebVtt => subtitles::parse_webvtt(&bytes),
            Format::Srt => subtitles::parse_srt(&bytes),
        };
        let cues = parsed.map_err(|e| unreadable(e.to_string()))?;
        if cues.skipped > 0 {
            tracing::warn!("{rel}: {} cues that cannot be read left out", cues.skipped);
        }
        Ok(cues)
    }

    /// A subtitle playlist, segment or whole file of `request`'s sidecars,
    /// timed by its first existing source.
    pub(super) fn subtitles(
        &self,
        request: &Request,
        uri_prefix: &str,
    ) -> Result<Answer, OriginError> {
        let tag = match &request.target {
            Target::SubtitlePlaylist { tag }
            | Target::SubtitleSegment { tag, .. }
            | Target::SubtitleFile { tag } => tag,
            _ => unreachable!("a subtitle target"),
        };
        let tracks = self.subtitle_tracks(&request.subtitle_base);
        let track = tracks
            .iter()
            .find(|t| &t.sidecar.tag() == tag)
            .ok_or_else(|| {
                OriginError::NotFound(format!(
                    "no {tag} subtitles beside {}",
                    request.subtitle_base
                ))
            })?;
        let (sources, _) = self.existing(&request.sources)?;
        let timing = &sources[0];
        let (what, k) = match &request.target {
            Target::SubtitlePlaylist { .. } => ("subtitles-playlist", 0),
            Target::SubtitleSegment { k, .. } => ("subtitles-segment", *k),
            _ => ("subtitles-file", 0),
        };
        let key = self.key(
            what,
            &[
                uri_prefix,
                &k.to_string(),
                tag,
                &track.source.key_part(),
                &timing.key_part(),
            ],
        );
        let content_type = match what {
            "subtitles-playlist" => PLAYLIST_TYPE,
            _ => WEBVTT_TYPE,
        };
        let both = [track.source.clone(), timing.clone()];
        let etag = crate::cache::etag_of(&key);
        let (bytes, state) = match self.in_memory.get(&key) {
            Some(bytes) => (bytes, State::Hit),
            None => {
                let rendition = self.rendition(timing)?;
                let plan = rendition.plan();
                let text = match &request.target {
                    Target::SubtitlePlaylist { .. } => {
                        // Only of a file that can be read, as masters list.
                        self.cues(track)?;
                        hls::subtitle_playlist(&plan.segments, tag, uri_prefix)
                    }
                    Target::SubtitleSegment { k, .. } => {
                        let segment = plan.segments.get(k - 1).ok_or_else(|| {
                            OriginError::NotFound(format!(
                                "subtitle segment {k} of {}",
                                plan.segments.len()
                            ))
                        })?;
                        let last = *k == plan.segments.len();
                        self.cues(track)?.segment(
                            millis(segment.start_90k),
                            (!last).then(|| millis(segment.end_90k)),
                            plan.stream_offset_90k,
                        )
                    }
                    // Times from the Period's start: the first segment's.
                    _ => {
                        let start = plan.segments.first().map_or(0, |s| s.start_90k);
                        self.cues(track)?.to_webvtt(millis(start))
                    }
                };
                let bytes = Arc::new(text.into_bytes());
                self.in_memory.insert(key, Arc::clone(&bytes));
                (bytes, State::Miss)
            }
        };
        Ok(from_memory(
            bytes,
            state,
            etag,
            content_type,
            last_modified(&both),
        ))
    }
}

fn millis(t_90k: i64) -> i64 {
    t_90k.div_euclid(90)
}
