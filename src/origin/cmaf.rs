//! The CMAF answers: the same source paths as the MSOD URLs, under
//! `server.cmaf_prefix`, as fMP4 HLS and DASH over one set of segments
//! (names in [`crate::packager::cmaf`]).

use super::{
    write_all, Answer, Origin, OriginError, Viewer, AUDIO_MP4_TYPE, MPD_TYPE, PLAYLIST_TYPE,
    VIDEO_MP4_TYPE,
};
use std::sync::Arc;

use super::subtitles::SubtitleTrack;
use crate::cache::{ObjectSpec, SourceId, State};
use crate::packager::captions::Captions;
use crate::packager::fmp4::TrackKind;
use crate::packager::url::{Request, Target};
use crate::packager::{cmaf, hls};

impl Origin {
    pub(super) fn answer_cmaf(
        &self,
        request: &Request,
        uri_prefix: &str,
        (query, viewer): (&str, &Viewer),
        ready: Option<&dyn Fn(Answer)>,
    ) -> Result<Answer, OriginError> {
        let rels = &request.sources;
        match &request.target {
            Target::Master => self.cmaf_manifest(request, uri_prefix, false),
            Target::Manifest => match self.preroll_for(&rels[0], query, viewer) {
                Some(ad) => self.mpd_after_preroll(request, &ad),
                None => self.cmaf_manifest(request, "", true),
            },
            Target::SubtitlePlaylist { .. }
            | Target::SubtitleSegment { .. }
            | Target::SubtitleFile { .. } => self.subtitles(request, uri_prefix),
            Target::MediaPlaylist { n, kind } => {
                let track = TrackKind::from_suffix(kind).expect("parsed as a track");
                let rel = &rels[*n];
                match self.preroll_of(rel, query, viewer)? {
                    Some(ad) => self.cmaf_playlist_after(&ad, rel, *n, track, uri_prefix),
                    None => self.cmaf_playlist(rel, *n, track, uri_prefix),
                }
            }
            Target::Init { n, track, key_id } => {
                self.init_segment(&rels[*n], *track, key_id.as_deref())
            }
            Target::Fragment {
                k,
                n,
                track,
                key_id,
            } => self.fragment(&rels[*n], *k, *track, key_id.as_deref(), ready),
            Target::TrickFragment { k, n } => self.trick_fragment(&rels[*n], *k, ready),
            Target::IFramePlaylist { n, .. } => {
                self.cmaf_iframe_playlist(&rels[*n], *n, uri_prefix)
            }
            Target::Key { n, key_id } => self.clear_key(&rels[*n], key_id),
            Target::Segment { .. } => {
                unreachable!("TS names are parsed under the MSOD prefix only")
            }
        }
    }

    /// The HLS master, or the DASH MPD, of the sources of `rels`; kept in
    /// memory as TS masters are.
    fn cmaf_manifest(
        &self,
        request: &Request,
        uri_prefix: &str,
        dash: bool,
    ) -> Result<Answer, OriginError> {
        let (sources, numbers) = self.existing(&request.sources)?;
        let what = if dash { "mpd" } else { "cmaf-master" };
        let tracks = self.subtitle_tracks(&request.subtitle_base);
        let key = self.master_key(what, &sources, &numbers, uri_prefix)
            + &Self::subtitles_key_part(&tracks)
            + &self.preroll_key_part();
        let content_type = if dash { MPD_TYPE } else { PLAYLIST_TYPE };
        self.in_memory(key, &sources, content_type, || {
            let tracks = self.with_file_tracks(tracks, &sources[0])?;
            let (text, _) =
                self.cmaf_manifest_text(&sources, &numbers, &tracks, uri_prefix, dash)?;
            Ok(text)
        })
    }

    /// What [`Origin::cmaf_manifest`] answers with, and its duration in
    /// seconds.
    pub(super) fn cmaf_manifest_text(
        &self,
        sources: &[SourceId],
        numbers: &[usize],
        tracks: &[SubtitleTrack],
        uri_prefix: &str,
        dash: bool,
    ) -> Result<(String, f64), OriginError> {
        {
            let mut described = Vec::with_capacity(sources.len());
            // Of each source with video, in the order masters list them.
            let mut captions = Vec::new();
            let mut duration: f64 = 0.0;
            let mut longest_segment: f64 = 0.0;
            for (n, source) in numbers.iter().zip(sources) {
                let rendition = self.rendition(source)?;
                duration = duration.max(rendition.duration_seconds());
                longest_segment = rendition
                    .plan()
                    .segments
                    .iter()
                    .map(|s| s.duration_90k() as f64 / 90_000.0)
                    .fold(longest_segment, f64::max);
                let mut described_source = rendition.cmaf_source(*n);
                if described_source.video.is_some() {
                    captions.push(rendition.captions());
                }
                if let Some(sealed) = self.cmaf_sealed(&source.rel) {
                    let tracks = described_source.video.iter_mut();
                    for track in tracks.chain(&mut described_source.audio) {
                        track.sealed = Some(sealed.clone());
                    }
                }
                if !dash && self.config.preroll.is_on() {
                    // A playlist lists the pre-roll's segments too (an MPD
                    // has them in a Period of their own).
                    let tracks = described_source.video.iter_mut();
                    for track in tracks.chain(&mut described_source.audio) {
                        let peak = self.cmaf_preroll_peak(&source.rel, source, track.kind);
                        track.bandwidth = track.bandwidth.max(peak);
                    }
                }
                described.push(described_source);
            }
            let subtitles = self.subtitle_entries(tracks);
            let text = if dash {
                let mpd = cmaf::mpd(&described, duration, longest_segment);
                let all = captions.iter().fold(Captions::default(), Captions::merged);
                let mpd = cmaf::with_closed_captions(&mpd, all);
                cmaf::with_text_tracks(&mpd, &subtitles, duration)
            } else {
                let master = cmaf::master_playlist(&described, uri_prefix);
                let master = hls::with_closed_captions(&master, &captions);
                hls::with_subtitles(&master, &subtitles, uri_prefix)
            };
            Ok((text, duration))
        }
    }

    fn cmaf_playlist(
        &self,
        rel: &str,
        n: usize,
        track: TrackKind,
        uri_prefix: &str,
    ) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        let id = format!("{}{}", source.key_part(), self.sealed_part(rel));
        let key = self.key(
            "cmaf-playlist",
            &[uri_prefix, &n.to_string(), &track.suffix(), &id],
        );
        let sealed = self.cmaf_sealed(rel);
        self.media_playlist_object(key, &source, uri_prefix, || {
            let rendition = self.rendition(&source)?;
            rendition
                .cmaf_media_playlist(n, track, uri_prefix, sealed.clone())
                .map_err(|e| super::error::packager_error(&source, e))
        })
    }

    fn init_segment(
        &self,
        rel: &str,
        track: TrackKind,
        key_id: Option<&str>,
    ) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        let sealing = self.named_key(rel, key_id, |p, id| p.sealing(id, rel))?;
        let id = format!("{}{}", source.key_part(), super::key_part(key_id));
        let key = self.key("init", &[&track.suffix(), &id]);
        let spec = ObjectSpec {
            key,
            kind: "init",
            ext: "mp4",
            sources: std::slice::from_ref(&source),
        };
        self.get(&spec, mp4_type(track), |out| {
            let rendition = self.rendition(&source)?;
            let bytes = rendition
                .init_segment(track, sealing.as_ref())
                .map_err(|e| super::error::packager_error(&source, e))?;
            write_all(out, &bytes)
        })
    }

    fn fragment(
        &self,
        rel: &str,
        k: usize,
        track: TrackKind,
        key_id: Option<&str>,
        ready: Option<&dyn Fn(Answer)>,
    ) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        let sealing = self.named_key(rel, key_id, |p, id| p.sealing(id, rel))?;
        let id = format!("{}{}", source.key_part(), super::key_part(key_id));
        let key = self.key("fragment", &[&k.to_string(), &track.suffix(), &id]);
        let spec = ObjectSpec {
            key,
            kind: "segment",
            ext: "m4s",
            sources: std::slice::from_ref(&source),
        };
        self.stream(&spec, mp4_type(track), ready, |out, announce| {
            let rendition = self.rendition(&source)?;
            let failed = |e| self.failed(&source, super::error::packager_error(&source, e));
            if let Some(sealing) = &sealing {
                // Made whole first: its moof depends on every sample.
                let bytes = rendition
                    .sealed_fragment(k - 1, track, sealing)
                    .map_err(failed)?;
                announce(bytes.len() as u64);
                return write_all(out, &bytes);
            }
            if let Some(len) = rendition.fragment_len(k - 1, track) {
                announce(len);
            }
            rendition
                .write_fragment(k - 1, track, out)
                .map(|_| ())
                .map_err(failed)
        })
    }

    /// The I-frame playlist of rendition `n`'s video (its trick-play
    /// fragments); kept in memory as masters are. Protected streams have
    /// none.
    fn cmaf_iframe_playlist(
        &self,
        rel: &str,
        n: usize,
        uri_prefix: &str,
    ) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        let key = self.key(
            "cmaf-iframes",
            &[uri_prefix, &n.to_string(), &source.key_part()],
        );
        self.in_memory(key, std::slice::from_ref(&source), PLAYLIST_TYPE, || {
            let none = || OriginError::NotFound(format!("{rel}: no I-frame playlist"));
            if self.cmaf_sealed(rel).is_some() {
                return Err(none());
            }
            let rendition = self.rendition(&source)?;
            rendition
                .cmaf_iframe_playlist(n, uri_prefix)
                .ok_or_else(none)
        })
    }

    /// Trick-play fragment `k` (1-based) of the video of `rel`: its
    /// segment's first picture. Cached as fragments are.
    fn trick_fragment(
        &self,
        rel: &str,
        k: usize,
        ready: Option<&dyn Fn(Answer)>,
    ) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        if self.cmaf_sealed(rel).is_some() {
            return Err(OriginError::NotFound(format!(
                "{rel}: protected: no trick play"
            )));
        }
        let key = self.key("trick", &[&k.to_string(), &source.key_part()]);
        let spec = ObjectSpec {
            key,
            kind: "segment",
            ext: "m4s",
            sources: std::slice::from_ref(&source),
        };
        self.stream(&spec, VIDEO_MP4_TYPE, ready, |out, announce| {
            let rendition = self.rendition(&source)?;
            let failed = |e| self.failed(&source, super::error::packager_error(&source, e));
            if !rendition.has_trick_play() {
                return Err(OriginError::NotFound(format!("{rel}: no trick play")));
            }
            if let Some(len) = rendition.trick_fragment_len(k - 1) {
                announce(len);
            }
            rendition
                .write_trick_fragment(k - 1, out)
                .map(|_| ())
                .map_err(failed)
        })
    }

    /// When the streams of the source at `rel` are protected: the id of
    /// the current secret (in new names) and the id of the `cbcs` key it
    /// gives.
    pub(super) fn cmaf_sealed(&self, rel: &str) -> Option<(String, [u8; 16])> {
        let protection = self.protection.as_ref().filter(|p| p.covers(rel))?;
        let sealing = protection.sealing(protection.key_id(), rel)?;
        Some((protection.key_id().to_string(), sealing.kid))
    }

    /// The `cbcs` key of the source at `rel` under the secret `key_id`, as
    /// a W3C ClearKey license (a JSON Web Key set, EME 9.1.4): what a page
    /// hands its player. Kept nowhere.
    fn clear_key(&self, rel: &str, key_id: &str) -> Result<Answer, OriginError> {
        let not_found = || OriginError::NotFound(format!("{rel}: no key {key_id}"));
        let sealing = self
            .protection
            .as_ref()
            .filter(|p| p.covers(rel))
            .and_then(|p| p.sealing(key_id, rel))
            .ok_or_else(not_found)?;
        let source = self.resolve(rel)?;
        let json = serde_json::json!({
            "keys": [{
                "kty": "oct",
                "kid": cmaf::base64(&sealing.kid, true),
                "k": cmaf::base64(&sealing.key, true),
            }],
            "type": "temporary",
        });
        Ok(super::from_memory(
            Arc::new(json.to_string().into_bytes()),
            State::Miss,
            crate::cache::etag_of(&format!("clearkey|{key_id}|{}", source.key_part())),
            super::JSON_KEY_TYPE,
            super::last_modified(std::slice::from_ref(&source)),
        ))
    }
}

fn mp4_type(track: TrackKind) -> &'static str {
    match track {
        TrackKind::Video => VIDEO_MP4_TYPE,
        TrackKind::Audio(_) => AUDIO_MP4_TYPE,
    }
}
