//! Subtitle renditions: from sidecar files, `<base>[.<lang>][.forced].vtt`
//! or `.srt` beside the sources (see [`Request::subtitle_base`]), and from
//! the subtitle tracks in the first source's file (tx3g, QuickTime text,
//! wvtt). They are listed in HLS masters (TS and fMP4) and DASH MPDs, and
//! cut into WebVTT segments along the first rendition's segments. All of it
//! is kept in memory only: made from a few kilobytes of text in well under
//! a millisecond.

use std::sync::Arc;

use super::{from_memory, last_modified, Answer, Origin, OriginError, PLAYLIST_TYPE};
use crate::cache::{SourceId, State};
use crate::packager::hls;
use crate::packager::subtitles::{self, Cues, Text};
use crate::packager::url::{Request, Target};

pub const WEBVTT_TYPE: &str = "text/vtt; charset=utf-8";

/// A subtitle rendition of a request: a sidecar, or a track of its first
/// source's file.
pub(super) type SubtitleTrack = subtitles::SubtitleTrack<SourceId>;

impl Origin {
    /// The sidecars of `base`, one for each tag (a WebVTT file before an
    /// SRT one of the same language), in tag order.
    pub(super) fn subtitle_tracks(&self, base: &str) -> Vec<SubtitleTrack> {
        let (dir, stem) = match base.rsplit_once('/') {
            Some((dir, stem)) => (format!("{dir}/"), stem),
            None => (String::new(), base),
        };
        subtitles::sidecar_tracks(stem, self.inputs.sidecars(base), |name| {
            self.inputs.resolve(&format!("{dir}{name}")).ok()
        })
    }

    /// `sidecars` and the subtitle tracks of `timing`'s file, one per
    /// language (a sidecar before a track of the same language), in tag
    /// order.
    pub(super) fn with_file_tracks(
        &self,
        tracks: Vec<SubtitleTrack>,
        timing: &SourceId,
    ) -> Result<Vec<SubtitleTrack>, OriginError> {
        let rendition = self.rendition(timing)?;
        Ok(subtitles::with_file_tracks(
            tracks,
            rendition.text_tracks(),
            timing,
            &timing.rel,
        ))
    }

    /// What a master's cache key says of its subtitles: each sidecar's tag
    /// and identity (empty when it has none).
    pub(super) fn subtitles_key_part(tracks: &[SubtitleTrack]) -> String {
        tracks
            .iter()
            .map(|t| format!("|sub:{}={}", t.tag, t.source.key_part()))
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

    /// The cues of a subtitle rendition: of a sidecar, SRT converted and
    /// bad cues skipped, with a warning.
    fn cues(&self, track: &SubtitleTrack) -> Result<Cues, OriginError> {
        let format = match track.text {
            Text::Sidecar(format) => format,
            Text::InFile(id) => {
                let rendition = self.rendition(&track.source)?;
                let found = rendition.text_tracks().iter().find(|t| t.track_id == id);
                return found.map(|t| t.cues.clone()).ok_or_else(|| {
                    OriginError::NotFound(format!("{}: no subtitle track {id}", track.source.rel))
                });
            }
        };
        let rel = &track.source.rel;
        let unreadable = |why: String| OriginError::Unprocessable(format!("{rel}: {why}"));
        let len = track.source.size;
        if len > subtitles::MAX_SIDECAR_BYTES {
            return Err(unreadable(format!(
                "{len} bytes, more than a subtitle file has ({} at most)",
                subtitles::MAX_SIDECAR_BYTES
            )));
        }
        let input = self.inputs.open(&track.source)?;
        let mut bytes = vec![0; len as usize];
        input
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| OriginError::Internal(format!("reading {rel}: {e}")))?;
        let cues = format
            .parse(&bytes)
            .map_err(|e| unreadable(e.to_string()))?;
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
        let (sources, _) = self.existing(&request.sources)?;
        let timing = &sources[0];
        let sidecars = self.subtitle_tracks(&request.subtitle_base);
        let tracks = self.with_file_tracks(sidecars, timing)?;
        let track = tracks.iter().find(|t| &t.tag == tag).ok_or_else(|| {
            OriginError::NotFound(format!(
                "no {tag} subtitles in or beside {}",
                request.subtitle_base
            ))
        })?;
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
        let (bytes, etag, state) = match self.in_memory.get(&key) {
            Some(kept) => (kept.bytes, kept.etag, State::Hit),
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
                        let cues = self.cues(track)?;
                        subtitles::hls_segment(&cues, plan, k - 1).ok_or_else(|| {
                            OriginError::NotFound(format!(
                                "subtitle segment {k} of {}",
                                plan.segments.len()
                            ))
                        })?
                    }
                    _ => subtitles::dash_file(&self.cues(track)?, plan),
                };
                let bytes = Arc::new(text.into_bytes());
                let etag = self.in_memory.insert(key, Arc::clone(&bytes));
                (bytes, etag, State::Miss)
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
