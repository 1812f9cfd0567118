//! What a player asks for next: the segments after segment K, or the first
//! segments of a media playlist. `serve` makes them ahead of the player
//! (`server.prefetch`) and names the next one in hints a CDN can act on.

use super::Origin;
use crate::packager::fmp4::TrackKind;
use crate::packager::url::{self, keyed, Target};
use crate::packager::{cmaf, hls};

impl Origin {
    /// The URL paths of at most `count` objects a player asks for after
    /// `path`, in the order it asks: the segments after a segment, the
    /// first segments of a media playlist, or after a master the first
    /// segment of its first rendition (each of its tracks, for CMAF),
    /// where players start; none past the last segment.
    /// None either for a source that is not in memory (a hit after a
    /// restart): no hint, rather than reading its index for one. Its file
    /// is not looked at again (this runs for every answer): a file
    /// replaced a moment ago may have its old count, and a segment asked
    /// ahead past its end is a 404 nobody sees.
    pub fn ahead(&self, path: &str, count: usize) -> Vec<String> {
        if count == 0 {
            return Vec::new();
        }
        let Some(slash) = path.rfind('/') else {
            return Vec::new();
        };
        let dir = &path[..=slash];
        let server = &self.config.server;
        let (request, cmaf) = if let Some(rest) = path.strip_prefix(server.cmaf_prefix.as_str()) {
            (url::parse_cmaf(rest), true)
        } else if let Some(rest) = path.strip_prefix(server.prefix.as_str()) {
            (url::parse(rest), false)
        } else {
            return Vec::new();
        };
        let Ok(request) = request else {
            return Vec::new();
        };
        self.ahead_of(dir, &request, cmaf, count)
    }

    /// [`Origin::ahead`] of a path already parsed: `request`, in the
    /// folder `dir` (with its last slash), CMAF or HLS.
    pub(super) fn ahead_of(
        &self,
        dir: &str,
        request: &url::Request,
        cmaf: bool,
        count: usize,
    ) -> Vec<String> {
        if count == 0 {
            return Vec::new();
        }
        // The segment numbers (1-based) that come next, and how to name one.
        let (n, after): (usize, usize) = match &request.target {
            Target::Segment { k, n, .. } | Target::Fragment { k, n, .. } => (*n, *k),
            Target::MediaPlaylist { n, .. } => (*n, 0),
            Target::Master | Target::Manifest => {
                return self.first_segments(dir, &request.sources, cmaf);
            }
            Target::Init { .. }
            | Target::Key { .. }
            | Target::TrickFragment { .. }
            | Target::IFramePlaylist { .. }
            | Target::SubtitlePlaylist { .. }
            | Target::SubtitleSegment { .. }
            | Target::SubtitleFile { .. } => return Vec::new(),
        };
        // A protected stream's segments name their secret: a segment's
        // followers the one it names, a playlist's the current one.
        let current = request.sources.get(n).and_then(|rel| self.key_id_of(rel));
        let name = |k: usize| -> Option<String> {
            match &request.target {
                Target::Segment { kind, key_id, .. } => {
                    Some(keyed(hls::segment_name(k, n, kind), key_id.as_deref()))
                }
                Target::Fragment { track, key_id, .. } => {
                    Some(keyed(cmaf::segment_name(k, n, *track), key_id.as_deref()))
                }
                Target::MediaPlaylist { kind, .. } if cmaf => Some(keyed(
                    cmaf::segment_name(k, n, TrackKind::from_suffix(kind)?),
                    current,
                )),
                Target::MediaPlaylist { kind, .. } => {
                    Some(keyed(hls::segment_name(k, n, kind), current))
                }
                _ => None,
            }
        };
        let Some((segments, _)) = request
            .sources
            .get(n)
            .and_then(|rel| self.kept_outline(rel))
        else {
            return Vec::new();
        };
        let last = segments.min(after.saturating_add(count));
        (after + 1..=last)
            .filter_map(|k| Some(format!("{dir}{}", name(k)?)))
            .collect()
    }

    /// After a master: the first segment of its first rendition, each of
    /// its tracks for CMAF.
    fn first_segments(&self, dir: &str, rels: &[String], cmaf: bool) -> Vec<String> {
        let Some((segments, kind)) = rels.first().and_then(|rel| self.kept_outline(rel)) else {
            return Vec::new();
        };
        if segments == 0 {
            return Vec::new();
        }
        let key_id = self.key_id_of(&rels[0]);
        if !cmaf {
            return vec![format!(
                "{dir}{}",
                keyed(hls::segment_name(1, 0, &kind), key_id)
            )];
        }
        let mut tracks = Vec::new();
        if kind.contains('v') {
            tracks.push(TrackKind::Video);
        }
        if kind.contains('a') {
            tracks.push(TrackKind::Audio(0));
        }
        tracks
            .into_iter()
            .map(|track| format!("{dir}{}", keyed(cmaf::segment_name(1, 0, track), key_id)))
            .collect()
    }

    /// The id of the secret the new segments of the source at `rel` are
    /// named with, when its streams are protected.
    fn key_id_of(&self, rel: &str) -> Option<&str> {
        self.sealed(rel).map(|(key_id, _)| key_id)
    }
}
