//! Pre-rolls: a short video played before the content of an HLS media
//! playlist, chosen by the viewer's country (`[preroll]`). The pre-roll is
//! a source like any other, packaged and cached once; the playlist lists
//! its segments under its own path, then `EXT-X-DISCONTINUITY`, then the
//! content's. Only media playlists depend on the country: masters and
//! segments are the same for everyone, and are cached once for all.

use super::{Answer, Origin, OriginError, Viewer, MPD_TYPE, PLAYLIST_TYPE};
use crate::cache::SourceId;
use crate::packager::fmp4::TrackKind;
use crate::packager::url::{self, Request, Target};
use crate::packager::{cmaf, hls};

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
        let is_preroll = |ad: &String| preroll_rels(ad).iter().any(|r| r == rel);
        if is_preroll(&p.default) || p.countries.values().any(is_preroll) {
            return None;
        }
        let chosen = viewer
            .country
            .as_deref()
            .and_then(|country| p.countries.get(country))
            .unwrap_or(&p.default);
        (!chosen.is_empty()).then(|| chosen.clone())
    }

    /// The pre-roll source of the media playlist of `rel` for `viewer`
    /// asked for with `query` (see [`Origin::preroll_for`] and
    /// [`Origin::preroll_source`]); `None` when it gets none.
    pub(super) fn preroll_of(
        &self,
        rel: &str,
        query: &str,
        viewer: &Viewer,
    ) -> Result<Option<SourceId>, OriginError> {
        match self.preroll_for(rel, query, viewer) {
            Some(ad) => Ok(self.preroll_source(&ad, &self.resolve(rel)?)),
            None => Ok(None),
        }
    }

    /// The pre-roll `ad` (a file, or a csmil set of renditions) for the
    /// content `source`: of a set, the rendition matched to it (see
    /// [`matched`]). `None` (with a warning) when none can be had: the
    /// content then plays without it.
    pub(super) fn preroll_source(&self, ad: &str, source: &SourceId) -> Option<SourceId> {
        let rels = preroll_rels(ad);
        let found: Vec<SourceId> = rels
            .iter()
            .filter_map(|rel| match self.resolve(rel) {
                Ok(found) => Some(found),
                Err(e) => {
                    tracing::warn!("pre-roll {rel}: {e}; left out");
                    None
                }
            })
            .collect();
        if found.len() <= 1 {
            return found.into_iter().next();
        }
        let content = match self.ts_rendition(source) {
            Ok(content) => Shape::of(&content),
            Err(_) => return found.into_iter().next(),
        };
        let shapes: Vec<(SourceId, Shape)> = found
            .into_iter()
            .filter_map(|ad| {
                let shape = Shape::of(&*self.ts_rendition(&ad).ok()?);
                Some((ad, shape))
            })
            .collect();
        matched(&content, &shapes).cloned()
    }

    /// The highest BANDWIDTH the media playlist of `source` (at `rel`) can
    /// have with the pre-rolls any viewer may get before it: a master's
    /// BANDWIDTH is the peak of every segment a variant's playlist lists.
    /// With `only` (`a` or `v`), of that track's playlists.
    pub(super) fn preroll_peak(&self, rel: &str, source: &SourceId, only: Option<&str>) -> u64 {
        self.prerolls_of_anyone(rel, source)
            .iter()
            .filter_map(|ad| match only {
                None => self.ts_rendition(ad).ok(),
                Some(kind) => self.rendition_of_kind(ad, kind).ok(),
            })
            .map(|r| r.variant().bandwidth)
            .max()
            .unwrap_or(0)
    }

    /// As [`Origin::preroll_peak`], of CMAF `kind` playlists.
    pub(super) fn cmaf_preroll_peak(&self, rel: &str, source: &SourceId, kind: TrackKind) -> u64 {
        self.prerolls_of_anyone(rel, source)
            .iter()
            .filter_map(|ad| self.rendition(ad).ok()?.cmaf_track(kind))
            .map(|t| t.bandwidth)
            .max()
            .unwrap_or(0)
    }

    /// The pre-rolls (matched to `source`) that any viewer may get before
    /// the media playlists of `source` at `rel`.
    fn prerolls_of_anyone(&self, rel: &str, source: &SourceId) -> Vec<SourceId> {
        let p = &self.config.preroll;
        let viewers = p
            .countries
            .keys()
            .map(|c| Viewer {
                country: Some(c.clone()),
            })
            .chain(std::iter::once(Viewer::default()));
        let mut ads: Vec<String> = viewers
            .filter_map(|viewer| self.preroll_for(rel, "", &viewer))
            .collect();
        ads.sort();
        ads.dedup();
        ads.iter()
            .filter_map(|ad| self.preroll_source(ad, source))
            .collect()
    }

    /// What a master's cache key says of the pre-rolls (their BANDWIDTH
    /// is in it): the configured ones, when any.
    pub(super) fn preroll_key_part(&self) -> String {
        let p = &self.config.preroll;
        if !p.is_on() {
            return String::new();
        }
        let countries: Vec<String> = p
            .countries
            .iter()
            .map(|(c, ad)| format!("{c}={ad}"))
            .collect();
        format!("|preroll={}|{}", p.default, countries.join(","))
    }

    /// The request header a media playlist or DASH MPD at `target` (a path
    /// with the prefix, and its query string if any) is chosen by, when
    /// pre-rolls are on for it: what a `Vary` header names.
    pub fn varies_by(&self, target: &str) -> Option<&str> {
        let p = &self.config.preroll;
        if !p.is_on() {
            return None;
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let server = &self.config.server;
        let request = match path.strip_prefix(server.cmaf_prefix.as_str()) {
            Some(rest) => url::parse_cmaf(rest).ok()?,
            None => url::parse(path.strip_prefix(server.prefix.as_str())?).ok()?,
        };
        let rel = match request.target {
            Target::MediaPlaylist { n, .. } => &request.sources[n],
            Target::Manifest => &request.sources[0],
            _ => return None,
        };
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

    /// The CMAF media playlist of `rel` (rendition `n`, `track`) after the
    /// pre-roll `ad`'s playlist of the same track, as
    /// [`Origin::media_playlist_after`] does for MPEG-TS.
    pub(super) fn cmaf_playlist_after(
        &self,
        ad: &SourceId,
        rel: &str,
        n: usize,
        track: TrackKind,
        uri_prefix: &str,
    ) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        let key = self.key(
            "cmaf-playlist-after",
            &[
                uri_prefix,
                &n.to_string(),
                &track.suffix(),
                &format!("{}{}", source.key_part(), self.sealed_part(rel)),
                &format!("{}{}", ad.key_part(), self.sealed_part(&ad.rel)),
            ],
        );
        let sources = [source.clone(), ad.clone()];
        self.in_memory(key, &sources, PLAYLIST_TYPE, || {
            let rendition = self.rendition(&source)?;
            let made = |r: &crate::packager::rendition::Rendition, n, prefix: &str, rel: &str| {
                r.cmaf_media_playlist(n, track, prefix, self.cmaf_sealed(rel))
            };
            let content = made(&rendition, n, uri_prefix, rel)
                .map_err(|e| super::error::packager_error(&source, e))?;
            let preroll = self.rendition(ad).and_then(|r| {
                made(&r, 0, &self.own_prefix(&ad.rel, true), &ad.rel)
                    .map_err(|e| super::error::packager_error(ad, e))
            });
            match preroll {
                Ok(preroll) => Ok(cmaf::media_playlist_after(&preroll, &content)),
                Err(e) => {
                    tracing::warn!("pre-roll {}: {e}; {rel} played without it", ad.rel);
                    Ok(content)
                }
            }
        })
    }

    /// The DASH MPD of `request`'s sources after the pre-roll `ad` (a file
    /// or a csmil set, all of whose renditions are in its Period): two
    /// Periods. Kept in memory under a key that names the pre-roll.
    pub(super) fn mpd_after_preroll(
        &self,
        request: &Request,
        ad: &str,
    ) -> Result<Answer, OriginError> {
        let (sources, numbers) = self.existing(&request.sources)?;
        let ads: Vec<SourceId> = preroll_rels(ad)
            .iter()
            .filter_map(|rel| self.resolve(rel).ok())
            .collect();
        let tracks = self.subtitle_tracks(&request.subtitle_base);
        let ad_part: String = ads
            .iter()
            .map(|a| format!("{}{}", a.key_part(), self.sealed_part(&a.rel)))
            .collect();
        let key = self.master_key("mpd-after", &sources, &numbers, "")
            + &Self::subtitles_key_part(&tracks)
            + &format!("|preroll={ad}|{ad_part}");
        let mut all = sources.clone();
        all.extend(ads.iter().cloned());
        self.in_memory(key, &all, MPD_TYPE, || {
            let tracks = self.with_file_tracks(tracks, &sources[0])?;
            let (content, seconds) =
                self.cmaf_manifest_text(&sources, &numbers, &tracks, "", true)?;
            if ads.is_empty() {
                tracing::warn!("pre-roll {ad}: not found; played without it");
                return Ok(content);
            }
            let ad_numbers: Vec<usize> = (0..ads.len()).collect();
            match self.cmaf_manifest_text(&ads, &ad_numbers, &[], "", true) {
                Ok((preroll, ad_seconds)) => Ok(cmaf::mpd_after_preroll(
                    &preroll,
                    &self.own_prefix(ad, true),
                    ad_seconds,
                    &content,
                    seconds,
                )),
                Err(e) => {
                    tracing::warn!("pre-roll {ad}: {e}; played without it");
                    Ok(content)
                }
            }
        })
    }

    /// Where a pre-roll's segments are named from a playlist of another
    /// directory: its own directory as an absolute path (under
    /// `server.base_url` when set), its components percent-encoded.
    fn preroll_prefix(&self, rel: &str) -> String {
        self.own_prefix(rel, false)
    }

    /// The absolute URL path of `rel`'s names (under `server.base_url`
    /// when set): MPEG-TS, or CMAF with `cmaf`.
    fn own_prefix(&self, rel: &str, cmaf: bool) -> String {
        let server = &self.config.server;
        let base = server.base_url.trim_end_matches('/');
        let prefix = if cmaf {
            &server.cmaf_prefix
        } else {
            &server.prefix
        };
        let encoded: Vec<String> = rel.split('/').map(url::percent_encoded).collect();
        format!("{base}{prefix}{}/", encoded.join("/"))
    }
}

/// The source paths of the pre-roll `ad` names: a file, or the renditions
/// of a csmil set (`ads/gb_,480,720,.mp4.csmil`, as in URLs).
pub fn preroll_rels(ad: &str) -> Vec<String> {
    if !ad.ends_with(".csmil") {
        return vec![ad.to_string()];
    }
    url::parse(&format!("{ad}/master.m3u8")).map_or_else(|_| Vec::new(), |r| r.sources)
}

/// What matching a pre-roll rendition to the content's looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    /// Picture height; 0 without video.
    height: u16,
    bandwidth: u64,
}

impl Shape {
    fn of(rendition: &crate::packager::rendition::Rendition) -> Shape {
        let height = rendition
            .index()
            .video
            .as_ref()
            .map_or(0, |v| match &v.codec {
                crate::packager::index::Codec::Video(config) => config.height,
                _ => 0,
            });
        Shape {
            height,
            bandwidth: rendition.variant().bandwidth,
        }
    }
}

/// The pre-roll rendition of `ads` for `content`: the tallest picture no
/// taller than the content's (the shortest when all are taller), then,
/// of those as tall, the highest bandwidth no higher than the content's
/// (the lowest when all are higher): a pre-roll that plays as smoothly
/// as the content does on the same connection.
fn matched<'a, T>(content: &Shape, ads: &'a [(T, Shape)]) -> Option<&'a T> {
    let fits = |s: &Shape| s.height <= content.height;
    let height = ads
        .iter()
        .map(|(_, s)| s)
        .filter(|s| fits(s))
        .map(|s| s.height)
        .max()
        .or_else(|| ads.iter().map(|(_, s)| s.height).min())?;
    let tall: Vec<&(T, Shape)> = ads.iter().filter(|(_, s)| s.height == height).collect();
    let within = tall
        .iter()
        .filter(|(_, s)| s.bandwidth <= content.bandwidth)
        .max_by_key(|(_, s)| s.bandwidth);
    within
        .or_else(|| tall.iter().min_by_key(|(_, s)| s.bandwidth))
        .map(|(ad, _)| ad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(height: u16, bandwidth: u64) -> Shape {
        Shape { height, bandwidth }
    }

    #[test]
    fn a_preroll_rendition_is_matched_by_height_then_bandwidth() {
        let ads = [
            ("360", shape(360, 800_000)),
            ("720", shape(720, 3_000_000)),
            ("720-low", shape(720, 1_500_000)),
            ("1080", shape(1080, 6_000_000)),
        ];
        let pick = |h, b| matched(&shape(h, b), &ads).copied();
        assert_eq!(pick(1080, 8_000_000), Some("1080"));
        assert_eq!(pick(720, 4_000_000), Some("720"));
        assert_eq!(pick(720, 2_000_000), Some("720-low"));
        assert_eq!(pick(720, 1_000_000), Some("720-low"));
        assert_eq!(pick(480, 1_000_000), Some("360"));
        assert_eq!(pick(240, 300_000), Some("360"));
        assert_eq!(pick(0, 128_000), Some("360"));
        assert_eq!(matched::<&str>(&shape(720, 1), &[]), None);
    }

    #[test]
    fn a_preroll_names_a_file_or_the_renditions_of_a_set() {
        assert_eq!(preroll_rels("ads/gb.mp4"), ["ads/gb.mp4"]);
        assert_eq!(
            preroll_rels("ads/gb_,480,720,.mp4.csmil"),
            ["ads/gb_480.mp4", "ads/gb_720.mp4"]
        );
        assert!(preroll_rels("ads/,.csmil").is_empty());
    }
}
