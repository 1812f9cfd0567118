//! The CMAF answers: the same source paths as the MSOD URLs, under
//! `server.cmaf_prefix`, as fMP4 HLS and DASH over one set of segments
//! (names in [`crate::packager::cmaf`]).

use super::{
    write_all, Answer, Origin, OriginError, AUDIO_MP4_TYPE, MPD_TYPE, PLAYLIST_TYPE, VIDEO_MP4_TYPE,
};
use crate::cache::ObjectSpec;
use crate::packager::cmaf;
use crate::packager::fmp4::TrackKind;
use crate::packager::url::{Request, Target};

impl Origin {
    pub(super) fn answer_cmaf(
        &self,
        request: &Request,
        uri_prefix: &str,
        ready: &dyn Fn(Answer),
    ) -> Result<Answer, OriginError> {
        let rels = &request.sources;
        if let Some(rel) = rels.iter().find(|rel| self.sealed(rel).is_some()) {
            // Until CMAF is encrypted too, its clear forms of a protected
            // stream are not served.
            return Err(OriginError::Forbidden(format!(
                "{rel}: protected; served encrypted as MPEG-TS HLS only"
            )));
        }
        match &request.target {
            Target::Master => self.cmaf_manifest(rels, uri_prefix, false),
            Target::Manifest => self.cmaf_manifest(rels, "", true),
            Target::MediaPlaylist { n, kind } => {
                let track = TrackKind::from_suffix(kind).expect("parsed as a track");
                self.cmaf_playlist(&rels[*n], *n, track, uri_prefix)
            }
            Target::Init { n, track } => self.init_segment(&rels[*n], *track),
            Target::Fragment { k, n, track } => self.fragment(&rels[*n], *k, *track, ready),
            Target::Segment { .. } | Target::Key { .. } => {
                unreachable!("TS and key names are parsed under the MSOD prefix only")
            }
        }
    }

    /// The HLS master, or the DASH MPD, of the sources of `rels`; kept in
    /// memory as TS masters are.
    fn cmaf_manifest(
        &self,
        rels: &[String],
        uri_prefix: &str,
        dash: bool,
    ) -> Result<Answer, OriginError> {
        let (sources, numbers) = self.existing(rels)?;
        let what = if dash { "mpd" } else { "cmaf-master" };
        let key = self.master_key(what, &sources, &numbers, uri_prefix);
        let content_type = if dash { MPD_TYPE } else { PLAYLIST_TYPE };
        self.in_memory(key, &sources, content_type, || {
            let mut described = Vec::with_capacity(sources.len());
            let mut duration: f64 = 0.0;
            let mut longest_segment: f64 = 0.0;
            for (n, source) in numbers.iter().zip(&sources) {
                let rendition = self.rendition(source)?;
                duration = duration.max(rendition.duration_seconds());
                longest_segment = rendition
                    .plan()
                    .segments
                    .iter()
                    .map(|s| s.duration_90k() as f64 / 90_000.0)
                    .fold(longest_segment, f64::max);
                described.push(rendition.cmaf_source(*n));
            }
            Ok(if dash {
                cmaf::mpd(&described, duration, longest_segment)
            } else {
                cmaf::master_playlist(&described, uri_prefix)
            })
        })
    }

    fn cmaf_playlist(
        &self,
        rel: &str,
        n: usize,
        track: TrackKind,
        uri_prefix: &str,
    ) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        let key = self.key(
            "cmaf-playlist",
            &[
                uri_prefix,
                &n.to_string(),
                &track.suffix(),
                &source.key_part(),
            ],
        );
        self.media_playlist_object(key, &source, uri_prefix, || {
            let rendition = self.rendition(&source)?;
            rendition
                .cmaf_media_playlist(n, track, uri_prefix)
                .map_err(|e| super::error::packager_error(&source, e))
        })
    }

    fn init_segment(&self, rel: &str, track: TrackKind) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        let key = self.key("init", &[&track.suffix(), &source.key_part()]);
        let spec = ObjectSpec {
            key,
            kind: "init",
            ext: "mp4",
            sources: std::slice::from_ref(&source),
        };
        self.get(&spec, mp4_type(track), |out| {
            let rendition = self.rendition(&source)?;
            let bytes = rendition
                .init_segment(track)
                .map_err(|e| super::error::packager_error(&source, e))?;
            write_all(out, &bytes)
        })
    }

    fn fragment(
        &self,
        rel: &str,
        k: usize,
        track: TrackKind,
        ready: &dyn Fn(Answer),
    ) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        let key = self.key(
            "fragment",
            &[&k.to_string(), &track.suffix(), &source.key_part()],
        );
        let spec = ObjectSpec {
            key,
            kind: "segment",
            ext: "m4s",
            sources: std::slice::from_ref(&source),
        };
        self.stream(&spec, mp4_type(track), ready, |out, announce| {
            let rendition = self.rendition(&source)?;
            if let Some(len) = rendition.fragment_len(k - 1, track) {
                announce(len);
            }
            rendition
                .write_fragment(k - 1, track, out)
                .map(|_| ())
                .map_err(|e| self.failed(&source, super::error::packager_error(&source, e)))
        })
    }
}

fn mp4_type(track: TrackKind) -> &'static str {
    match track {
        TrackKind::Video => VIDEO_MP4_TYPE,
        TrackKind::Audio(_) => AUDIO_MP4_TYPE,
    }
}
