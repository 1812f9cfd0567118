//! Pre-rolls: a short video played before the content of an HLS media
//! playlist, chosen by the viewer's country (`[preroll]`). The pre-roll is
//! a source like any other, packaged and cached once; the playlist lists
//! its segments under its own path, then `EXT-X-DISCONTINUITY`, then the
//! content's. Only media playlists depend on the country: masters and
//! segments are the same for everyone, and are cached once for all.

use super::{Answer, Origin, OriginError, Viewer, PLAYLIST_TYPE};
use crate::cache::SourceId;
use crate::packager::hls;
use crate::packager::url::{self, Target};

impl Origin {
    /// The pre-roll (a source path) of the media playlist of `rel` for
    /// `viewer`, asked for with `query`; `None` when it gets none: no
    /// pre-roll for the country and no default, a path in
    /// `preroll.off_paths`, `<param>=0` in the query, or `rel` itself a
    /// pre-roll.
    pub(super) fn preroll_for(&self, rel: &str, query: &str, viewer: &Viewer) -> Option<String> {
        let p = &self.config.preroll;
        if !p.is_on() {
            return None;
        }
        let off = format!("{}=0", p.param);
        if query.split('&').any(|pair| pair == off) {
            return None;
        }
        if p.off_paths
            .iter()
            .any(|prefix| rel.starts_with(prefix.as_str()))
        {
            return None;
        }
        if p.default == rel || p.countries.values().any(|ad| ad == rel) {
            return None;
        }
        let chosen = viewer
            .country
            .as_deref()
            .and_then(|country| p.countries.get(country))
            .unwrap_or(&p.default);
        (!chosen.is_empty()).then(|| chosen.clone())
    }

    /// The identity of the pre-roll at `rel`; `None` (with a warning) when
    /// it cannot be had: the content then plays without it.
    pub(super) fn preroll_source(&self, rel: &str) -> Option<SourceId> {
        match self.resolve(rel) {
            Ok(source) => Some(source),
            Err(e) => {
                tracing::warn!("pre-roll {rel}: {e}; played without it");
                None
            }
        }
    }

    /// The request header a media playlist at `target` (a path with the
    /// prefix, and its query string if any) is chosen by, when pre-rolls
    /// are on for it: what a `Vary` header names.
    pub fn varies_by(&self, target: &str) -> Option<&str> {
        let p = &self.config.preroll;
        if !p.is_on() {
            return None;
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let rest = path.strip_prefix(self.config.server.prefix.as_str())?;
        let request = url::parse(rest).ok()?;
        let Target::MediaPlaylist { n, .. } = request.target else {
            return None;
        };
        let rel = &request.sources[n];
        let any = Viewer {
            country: p.countries.keys().next().cloned(),
        };
        let someone = self.preroll_for(rel, query, &any).is_some()
            || self.preroll_for(rel, query, &Viewer::default()).is_some();
        someone.then_some(p.header.as_str())
    }

    /// The media playlist of `rel` (rendition `n`, `kind`) after the
    /// pre-roll `ad`'s segments of the same kind. Kept in memory only,
    /// under a key that names the pre-roll (not the country: countries
    /// with one pre-roll share it). A pre-roll without a track of that
    /// kind is left out, with a warning.
    pub(super) fn media_playlist_after(
        &self,
        ad: &SourceId,
        rel: &str,
        n: usize,
        kind: &str,
        uri_prefix: &str,
        key_base: &str,
    ) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        let key_id = self.sealed(rel).map(|(key_id, _)| key_id);
        let ad_key_id = self.sealed(&ad.rel).map(|(key_id, _)| key_id);
        let ad_dir = &ad.rel[..ad.rel.rfind('/').map_or(0, |at| at + 1)];
        let ad_prefix = self.preroll_prefix(&ad.rel);
        let ad_key_base = self.key_base(ad_dir);
        let key = self.media_playlist_key(
            &source,
            n,
            kind,
            &format!(
                "{uri_prefix}|{key_base}|preroll={}{}",
                ad.key_part(),
                self.sealed_part(&ad.rel)
            ),
        );
        let sources = [source.clone(), ad.clone()];
        self.in_memory(key, &sources, PLAYLIST_TYPE, || {
            let rendition = self.rendition_of_kind(&source, kind)?;
            let content_key = key_id.map(|id| (id, key_base));
            let preroll = match self.rendition_of_kind(ad, kind) {
                Ok(preroll) => preroll,
                Err(e) => {
                    tracing::warn!("pre-roll {}: {e}; {rel} played without it", ad.rel);
                    return Ok(rendition.media_playlist(n, uri_prefix, content_key));
                }
            };
            let ad_base = if ad_key_base.is_empty() {
                ad_prefix.clone()
            } else {
                ad_key_base.clone()
            };
            let preroll = hls::Preroll {
                segments: &preroll.plan().segments,
                prefix: ad_prefix.clone(),
                key: ad_key_id.map(|id| (id.to_string(), ad_base)),
            };
            Ok(hls::media_playlist_after(
                Some(&preroll),
                &rendition.plan().segments,
                n,
                kind,
                uri_prefix,
                content_key,
            ))
        })
    }

    /// Where a pre-roll's segments are named from a playlist of another
    /// directory: its own directory as an absolute path (under
    /// `server.base_url` when set), its components percent-encoded.
    fn preroll_prefix(&self, rel: &str) -> String {
        let base = self.config.server.base_url.trim_end_matches('/');
        let encoded: Vec<String> = rel.split('/').map(url::percent_encoded).collect();
        format!("{base}{}{}/", self.config.server.prefix, encoded.join("/"))
    }
}
