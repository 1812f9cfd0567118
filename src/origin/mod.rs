//! The origin: an MSOD URL path in, the bytes of a playlist or segment out,
//! through the cache. `serve` puts HTTP around it; `master` and the cache
//! mode of `package` call it directly. It knows no HTTP: its errors say
//! what went wrong, and `serve` maps them to statuses.

mod ahead;
mod cmaf;
mod error;
mod in_memory;
mod preroll;
mod protection;
mod sources;
mod subtitles;

pub use error::{OriginError, RETRY_AFTER_SECONDS};
pub use preroll::preroll_rels;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::cache::remote::{S3Bucket, Store, Timeouts};
use crate::cache::{
    self, Backend, BackendKind, Body, Cache, CacheError, InputSettings, Inputs, Object, ObjectSpec,
    SourceId, Sources, State,
};
use crate::cache::{FETCHED_BYTES, FETCHED_REQUESTS};
use crate::config::{Config, SourceType};
use crate::packager::rendition::Rendition;
use crate::packager::url::{self, Target};
use crate::packager::{encrypt, hls, FORMAT_VERSION};

/// Who asks, as far as an answer depends on it.
#[derive(Clone, Debug, Default)]
pub struct Viewer {
    /// ISO 3166 alpha-2 country code, lower case; `None` when unknown.
    pub country: Option<String>,
}

impl Viewer {
    /// The viewer whose country is `code` (any case; anything but two
    /// letters is no country).
    pub fn in_country(code: &str) -> Viewer {
        let code = code.trim();
        let fits = code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic());
        Viewer {
            country: fits.then(|| code.to_ascii_lowercase()),
        }
    }
}

pub struct Answer {
    pub object: Object,
    pub content_type: &'static str,
    /// Newest modification time of the sources, seconds since the epoch.
    pub last_modified: i64,
}

pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
pub const SEGMENT_TYPE: &str = "video/mp2t";
pub const MPD_TYPE: &str = "application/dash+xml";
pub const VIDEO_MP4_TYPE: &str = "video/mp4";
pub const AUDIO_MP4_TYPE: &str = "audio/mp4";
/// An AES-128 key: 16 bytes (RFC 8216 5.2).
pub const KEY_TYPE: &str = "application/octet-stream";
/// A ClearKey license: a JSON Web Key set (W3C EME 9.1.4).
pub const JSON_KEY_TYPE: &str = "application/json";

/// Renditions of one track of a source ([`Rendition::part`]) kept, at
/// most, and their sample tables' bytes at most (each holds a copy of its
/// track's).
const PARTS_IN_MEMORY: usize = 64;
const PARTS_MEMORY_BYTES: usize = 128 << 20;

pub struct Origin {
    /// The configuration it started with.
    config: Config,
    /// The configuration in force: that one, with what a reload changed of
    /// the keys a running server takes ([`Config::reloaded`]).
    live: std::sync::RwLock<Arc<Config>>,
    /// One-track renditions of sources, by source and kind.
    parts: std::sync::Mutex<std::collections::HashMap<(SourceId, String), Arc<Rendition>>>,
    cache: Arc<Cache>,
    inputs: Arc<Inputs>,
    parsed: sources::ParsedSources,
    opening: sources::Opening,
    index_writer: sources::IndexWriter,
    in_memory: in_memory::InMemory,
    failures: sources::Failures,
    uses: AtomicU64,
    /// Encryption, when `[protection]` asks for it.
    protection: Option<protection::Protection>,
}

impl Origin {
    /// The origin of `config`'s sources, through `cache`; an error when a
    /// key it names cannot be read.
    pub fn new(config: Config, cache: Cache) -> anyhow::Result<Origin> {
        let protection = protection::Protection::new(&config.protection)?;
        let cache = Arc::new(cache);
        let inputs = Inputs::new(
            Arc::clone(&cache),
            sources_of(&config),
            input_settings(&config),
        );
        Ok(Origin {
            protection,
            live: std::sync::RwLock::new(Arc::new(config.clone())),
            config,
            index_writer: sources::IndexWriter::new(Arc::clone(&cache)),
            cache,
            inputs,
            parts: Default::default(),
            parsed: Default::default(),
            opening: Default::default(),
            in_memory: Default::default(),
            failures: Default::default(),
            uses: Default::default(),
        })
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.live.read().expect("config lock"))
    }

    /// Takes from `new` what a running server can (see
    /// [`Config::reloaded`]); returns the keys taken and those that need a
    /// restart.
    pub fn reload(&self, new: &Config) -> (Vec<String>, Vec<String>) {
        let mut live = self.live.write().expect("config lock");
        let (applied, taken, left) = live.reloaded(new);
        *live = Arc::new(applied);
        (taken, left)
    }

    pub fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    /// Before the process exits: waits, at most `limit`, for the indexes
    /// read to be stored, then records the use gathered
    /// ([`Origin::flush_use`]).
    pub fn finish(&self, limit: std::time::Duration) -> Result<(), CacheError> {
        self.index_writer.wait_idle(limit);
        self.flush_use()
    }

    /// Writes what was gathered in memory (last accesses, hit counts, bytes
    /// fetched from remote stores) to the cache database.
    pub fn flush_use(&self) -> Result<(), CacheError> {
        let fetched: Vec<(String, u64)> = self
            .inputs
            .take_fetched()
            .into_iter()
            .flat_map(|(prefix, bytes, requests)| {
                [
                    (format!("{FETCHED_BYTES}{prefix}"), bytes),
                    (format!("{FETCHED_REQUESTS}{prefix}"), requests),
                ]
            })
            .collect();
        if !fetched.is_empty() {
            self.cache.add_counters(&fetched)?;
        }
        self.cache.flush_use()
    }

    /// Answers a URL path (with the prefix). It may end in a query string:
    /// a master's filters its variants ([`url::MasterFilter`]); anything
    /// else in it is ignored.
    pub fn answer(&self, path: &str) -> Result<Answer, OriginError> {
        self.answer_for(path, &Viewer::default(), None)
    }

    /// As [`Origin::answer`], for `viewer`: a media playlist then starts
    /// with the pre-roll of the viewer's country, if any (`[preroll]`).
    /// With `ready`, a segment made for this request is also handed to it
    /// as soon as it is made, before it is stored (from memory:
    /// [`Body::Answered`]), and stored once that answer is done with it.
    /// The answer returned afterwards is the same object.
    pub fn answer_for(
        &self,
        path: &str,
        viewer: &Viewer,
        ready: Option<&dyn Fn(Answer)>,
    ) -> Result<Answer, OriginError> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let server = &self.config.server;
        let uri_prefix = self.uri_prefix(path);
        if let Some(rest) = path.strip_prefix(server.cmaf_prefix.as_str()) {
            let request = url::parse_cmaf(rest)?;
            return self.answer_cmaf(&request, &uri_prefix, (query, viewer), ready);
        }
        let keys = &self.config.protection.key_prefix;
        if let Some(rest) = path
            .strip_prefix(keys.as_str())
            .filter(|_| !keys.is_empty())
        {
            // Keys only, where `protection.key_prefix` puts them.
            let request = url::parse(rest)?;
            let Target::Key { n, key_id } = &request.target else {
                return Err(OriginError::NotFound(format!(
                    "{path}: only keys under {keys}"
                )));
            };
            return self.aes_key(&request.sources[*n], key_id);
        }
        let rest = path.strip_prefix(server.prefix.as_str()).ok_or_else(|| {
            OriginError::NotFound(format!(
                "{path}: not under {} or {}",
                server.prefix, server.cmaf_prefix
            ))
        })?;
        let request = url::parse(rest)?;
        let ts_refused = |rel: &String| {
            self.protection
                .as_ref()
                .is_some_and(|p| !p.has_ts() && p.covers(rel))
        };
        if let Some(rel) = request.sources.iter().find(|rel| ts_refused(rel)) {
            return Err(OriginError::Forbidden(format!(
                "{rel}: protected with sample-aes: served as CMAF ({}) only",
                server.cmaf_prefix
            )));
        }
        match &request.target {
            Target::Master => {
                let filter = url::MasterFilter::of_query(query)?;
                self.master(&request, &uri_prefix, filter.as_ref())
            }
            Target::SubtitlePlaylist { .. }
            | Target::SubtitleSegment { .. }
            | Target::SubtitleFile { .. } => self.subtitles(&request, &uri_prefix),
            Target::MediaPlaylist { n, kind } => {
                let rel = &request.sources[*n];
                let kind = self.own_kind(rel, kind)?;
                let dir = &rest[..rest.rfind('/').map_or(0, |at| at + 1)];
                let key_base = self.key_base(dir);
                match self.preroll_of(rel, query, viewer)? {
                    Some(ad) => {
                        self.media_playlist_after(&ad, rel, *n, &kind, &uri_prefix, &key_base)
                    }
                    None => self.media_playlist(rel, *n, &kind, &uri_prefix, &key_base),
                }
            }
            Target::Segment { k, n, kind, key_id } => {
                let rel = &request.sources[*n];
                let kind = self.own_kind(rel, kind)?;
                self.segment(rel, *k, &kind, key_id.as_deref(), ready)
            }
            Target::IFramePlaylist { n, kind } => {
                self.iframe_playlist(&request.sources[*n], *n, kind, &uri_prefix)
            }
            Target::Key { .. } if !keys.is_empty() => Err(OriginError::NotFound(format!(
                "{path}: keys are under {keys} (protection.key_prefix)"
            ))),
            Target::Key { n, key_id } => self.aes_key(&request.sources[*n], key_id),
            Target::Manifest
            | Target::Init { .. }
            | Target::Fragment { .. }
            | Target::TrickFragment { .. } => {
                unreachable!("CMAF names are parsed under the CMAF prefix only")
            }
        }
    }

    /// `kind`, or when it is empty (the predecessor's names) the tracks
    /// of the source at `rel`.
    fn own_kind(&self, rel: &str, kind: &str) -> Result<String, OriginError> {
        if !kind.is_empty() {
            return Ok(kind.to_string());
        }
        let source = self.resolve(rel)?;
        Ok(self.ts_rendition(&source)?.kind().to_string())
    }

    /// Where relative URIs in the playlists of `path` resolve: its
    /// directory under `server.base_url`, or nothing without one.
    fn uri_prefix(&self, path: &str) -> String {
        match self.config.server.base_url.trim_end_matches('/') {
            "" => String::new(),
            base => format!("{base}{}/", &path[..path.rfind('/').expect("has a slash")]),
        }
    }

    /// The answer to `path` when it can be had without waiting: an HLS
    /// playlist kept in memory, of sources whose identities can be read at
    /// once ([`Inputs::resolve_at_once`]). A server answers these on its
    /// event loop, without the hop to a worker thread and back. `None`:
    /// ask [`Origin::answer_for`], which also gives the errors. With the
    /// answer, what a player asks for after it: [`Origin::ahead`] of its
    /// path, `count` of them, from the URL parsed once.
    pub fn answer_at_once(
        &self,
        path: &str,
        viewer: &Viewer,
        count: usize,
    ) -> Option<(Answer, Vec<String>)> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let rest = path.strip_prefix(self.config.server.prefix.as_str())?;
        let request = url::parse(rest).ok()?;
        let uri_prefix = self.uri_prefix(path);
        let (key, sources) = match &request.target {
            Target::Master => {
                let sources = request
                    .sources
                    .iter()
                    .map(|rel| self.inputs.resolve_at_once(rel))
                    .collect::<Option<Vec<_>>>()?;
                let numbers: Vec<usize> = (0..sources.len()).collect();
                let filter = url::MasterFilter::of_query(query).ok()?;
                let tracks = self.subtitle_tracks(&request.subtitle_base);
                let key = self.master_key("master", &sources, &numbers, &uri_prefix)
                    + &Self::subtitles_key_part(&tracks)
                    + &self.preroll_key_part();
                (filtered(key, filter.as_ref()), sources)
            }
            Target::MediaPlaylist { n, kind } if !kind.is_empty() => {
                let rel = &request.sources[*n];
                if self.preroll_for(rel, query, viewer).is_some() {
                    return None;
                }
                let source = self.inputs.resolve_at_once(rel)?;
                (
                    self.media_playlist_key(&source, *n, kind, &uri_prefix),
                    vec![source],
                )
            }
            _ => return None,
        };
        let kept = self.in_memory.get(&key)?;
        self.cache.count_hit(&key);
        let answer = from_memory(
            kept.bytes,
            State::Hit,
            kept.etag,
            PLAYLIST_TYPE,
            last_modified(&sources),
        );
        // A CMAF path under the HLS prefix is named by its own rules.
        let ahead = if path.starts_with(self.config.server.cmaf_prefix.as_str()) {
            self.ahead(path, count)
        } else {
            match path.rfind('/') {
                Some(slash) => self.ahead_of(&path[..=slash], &request, false, count),
                None => Vec::new(),
            }
        };
        Some((answer, ahead))
    }

    /// The sources of `rels` that exist, with their numbers; a missing
    /// file of a csmil set is left out.
    fn existing(&self, rels: &[String]) -> Result<(Vec<SourceId>, Vec<usize>), OriginError> {
        let mut sources = Vec::new();
        let mut numbers = Vec::new();
        for (n, rel) in rels.iter().enumerate() {
            match self.resolve(rel) {
                Ok(source) => {
                    sources.push(source);
                    numbers.push(n);
                }
                Err(OriginError::NotFound(_)) if rels.len() > 1 => {
                    tracing::info!(
                        "{rel}: listed in a csmil URL but missing, left out of the master"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        if sources.is_empty() {
            return Err(OriginError::NotFound(format!(
                "none of the {} files exists",
                rels.len()
            )));
        }
        Ok((sources, numbers))
    }

    /// A key part naming the sources of a master by number and identity.
    /// The cache key of a master (`what`: of HLS or DASH) of `sources`,
    /// numbered as in their URL.
    fn master_key(
        &self,
        what: &str,
        sources: &[SourceId],
        numbers: &[usize],
        uri_prefix: &str,
    ) -> String {
        let ids: Vec<String> = numbers
            .iter()
            .zip(sources)
            .map(|(n, s)| format!("{n}={}{}", s.key_part(), self.sealed_part(&s.rel)))
            .collect();
        self.key(what, &[uri_prefix, &ids.join("|")])
    }

    /// The master of `rels`; with `filter`, only the variants it keeps,
    /// in its order and of its tracks, kept in memory under a key of its
    /// own.
    fn master(
        &self,
        request: &url::Request,
        uri_prefix: &str,
        filter: Option<&url::MasterFilter>,
    ) -> Result<Answer, OriginError> {
        let rels = &request.sources;
        let (sources, numbers) = self.existing(rels)?;
        let tracks = self.subtitle_tracks(&request.subtitle_base);
        let key = filtered(
            self.master_key("master", &sources, &numbers, uri_prefix)
                + &Self::subtitles_key_part(&tracks)
                + &self.preroll_key_part(),
            filter,
        );
        self.in_memory(key, &sources, PLAYLIST_TYPE, || {
            let only = filter.and_then(|f| f.tracks.kind_suffix());
            let mut variants = Vec::with_capacity(sources.len());
            let mut captions = Vec::with_capacity(sources.len());
            let mut bitrates = Vec::with_capacity(sources.len());
            for (n, source) in numbers.iter().zip(&sources) {
                let rendition = self.ts_rendition(source)?;
                let whole = rendition.variant();
                let average = whole.average_bandwidth;
                if !filter.is_none_or(|f| f.keeps(average)) {
                    continue;
                }
                let part = match only {
                    None => Arc::clone(&rendition),
                    Some(kind) => match self.rendition_of_kind(source, kind) {
                        Ok(part) => part,
                        // A rendition without the track: not listed.
                        Err(OriginError::NotFound(_)) => continue,
                        Err(e) => return Err(e),
                    },
                };
                // An encrypted segment has no byte range a player could
                // decode alone: no I-frame playlist then.
                let mut variant = match self.sealed(&source.rel) {
                    Some(_) => part.aes128_variant(),
                    None => part.variant_with_iframes(),
                };
                variant.bandwidth =
                    variant
                        .bandwidth
                        .max(self.preroll_peak(&source.rel, source, only));
                if only == Some("a") {
                    // The file's other audio tracks stay its alternatives.
                    variant.audio_language = whole.audio_language;
                    variant.other_audio = whole.other_audio;
                }
                variants.push((*n, variant));
                captions.push(match only {
                    Some("a") => Default::default(),
                    _ => rendition.captions(),
                });
                bitrates.push(average);
            }
            if variants.is_empty() {
                return Err(OriginError::NotFound(format!(
                    "no rendition of {} is kept by the master's filter",
                    rels.join(", ")
                )));
            }
            if let Some(first) = filter.and_then(|f| f.first_of(&bitrates)) {
                variants[..=first].rotate_right(1);
                captions[..=first].rotate_right(1);
            }
            let master = hls::master_playlist(&variants, uri_prefix);
            let master = hls::with_closed_captions(&master, &captions);
            let tracks = self.with_file_tracks(tracks, &sources[0])?;
            let subtitles = self.subtitle_entries(&tracks);
            Ok(hls::with_subtitles(&master, &subtitles, uri_prefix))
        })
    }

    /// A playlist from memory, or made by `make` and kept there (see
    /// [`in_memory`]).
    fn in_memory(
        &self,
        key: String,
        sources: &[SourceId],
        content_type: &'static str,
        make: impl FnOnce() -> Result<String, OriginError>,
    ) -> Result<Answer, OriginError> {
        let (bytes, etag, state) = match self.in_memory.get(&key) {
            Some(kept) => (kept.bytes, kept.etag, State::Hit),
            None => {
                let bytes = Arc::new(make()?.into_bytes());
                let etag = self.in_memory.insert(key, Arc::clone(&bytes));
                (bytes, etag, State::Miss)
            }
        };
        Ok(from_memory(
            bytes,
            state,
            etag,
            content_type,
            last_modified(sources),
        ))
    }

    /// `key_base`: where its key's name goes, when keys have a URL prefix
    /// of their own ([`Origin::key_base`]); empty: beside it.
    fn media_playlist(
        &self,
        rel: &str,
        n: usize,
        kind: &str,
        uri_prefix: &str,
        key_base: &str,
    ) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        let key_id = self.sealed(rel).map(|(key_id, _)| key_id);
        let make = || {
            let rendition = self.rendition_of_kind(&source, kind)?;
            Ok(rendition.media_playlist(n, uri_prefix, key_id.map(|id| (id, key_base))))
        };
        if key_id.is_some() && !key_base.is_empty() {
            // Its key's URI carries the URL's directory, as absolute URIs
            // do: kept in memory only.
            let key =
                self.media_playlist_key(&source, n, kind, &format!("{uri_prefix}|{key_base}"));
            return self.in_memory(key, std::slice::from_ref(&source), PLAYLIST_TYPE, make);
        }
        let key = self.media_playlist_key(&source, n, kind, uri_prefix);
        self.media_playlist_object(key, &source, uri_prefix, make)
    }

    /// Where a media playlist in the MSOD directory `dir` (after the
    /// prefix, `/`-ended) names its key when `protection.key_prefix` is
    /// set (under `server.base_url`, if any); empty when it is not.
    fn key_base(&self, dir: &str) -> String {
        let keys = &self.config.protection.key_prefix;
        if keys.is_empty() {
            return String::new();
        }
        let base = self.config.server.base_url.trim_end_matches('/');
        format!("{base}{keys}{dir}")
    }

    fn media_playlist_key(
        &self,
        source: &SourceId,
        n: usize,
        kind: &str,
        uri_prefix: &str,
    ) -> String {
        let mut id = source.key_part();
        id.push_str(&self.sealed_part(&source.rel));
        self.key("playlist", &[uri_prefix, &n.to_string(), kind, &id])
    }

    /// Rendition `n`'s I-frame playlist: kept in memory only (it is made
    /// from the parsed source at once). Not for protected streams (their
    /// segments are encrypted whole), nor for a source without video.
    fn iframe_playlist(
        &self,
        rel: &str,
        n: usize,
        kind: &str,
        uri_prefix: &str,
    ) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        if self.sealed(rel).is_some() {
            return Err(OriginError::NotFound(format!(
                "{rel}: protected: no I-frame playlist"
            )));
        }
        let key = self.key(
            "iframes",
            &[uri_prefix, &n.to_string(), kind, &source.key_part()],
        );
        let sources = std::slice::from_ref(&source);
        self.in_memory(key, sources, PLAYLIST_TYPE, || {
            let rendition = self.rendition_of_kind(&source, kind)?;
            rendition.iframe_playlist(n, uri_prefix).ok_or_else(|| {
                OriginError::NotFound(format!("{rel} has no video: no I-frame playlist"))
            })
        })
    }

    /// A media playlist of `source` made by `make`: stored in the cache,
    /// or kept in memory when its URIs are absolute (they carry the URL's
    /// directory, and any csmil label makes another one).
    fn media_playlist_object(
        &self,
        key: String,
        source: &SourceId,
        uri_prefix: &str,
        make: impl Fn() -> Result<String, OriginError>,
    ) -> Result<Answer, OriginError> {
        let sources = std::slice::from_ref(source);
        if !uri_prefix.is_empty() {
            return self.in_memory(key, sources, PLAYLIST_TYPE, make);
        }
        // Stored, and kept in memory in front of the cache: a hit then
        // costs no database lookup and no file.
        if let Some(kept) = self.in_memory.get(&key) {
            self.cache.count_hit(&key);
            return Ok(from_memory(
                kept.bytes,
                State::Hit,
                kept.etag,
                PLAYLIST_TYPE,
                last_modified(sources),
            ));
        }
        let spec = ObjectSpec {
            key,
            kind: "playlist",
            ext: "m3u8",
            sources,
        };
        let Answer {
            object,
            content_type,
            last_modified,
        } = self.get(&spec, PLAYLIST_TYPE, |out| {
            write_all(out, make()?.as_bytes())
        })?;
        let (state, etag) = (object.state, object.etag.clone());
        let bytes = match &object.body {
            Body::Bytes(bytes) => Arc::clone(bytes),
            Body::File(_) | Body::Held(_) | Body::Answered(_) => Arc::new(
                object
                    .into_bytes()
                    .map_err(|e| OriginError::Internal(format!("reading the cache: {e}")))?,
            ),
        };
        self.in_memory.insert(spec.key, Arc::clone(&bytes));
        Ok(from_memory(bytes, state, etag, content_type, last_modified))
    }

    fn segment(
        &self,
        rel: &str,
        k: usize,
        kind: &str,
        key_id: Option<&str>,
        ready: Option<&dyn Fn(Answer)>,
    ) -> Result<Answer, OriginError> {
        let source = self.resolve(rel)?;
        let aes_key = self.named_key(rel, key_id, |p, id| p.key(id, rel))?;
        let id = format!("{}{}", source.key_part(), key_part(key_id));
        let key = self.key("segment", &[&k.to_string(), kind, &id]);
        let spec = ObjectSpec {
            key,
            kind: "segment",
            ext: "ts",
            sources: std::slice::from_ref(&source),
        };
        self.stream(&spec, SEGMENT_TYPE, ready, |out, announce| {
            let rendition = self.rendition_of_kind(&source, kind)?;
            let failed = |e| self.failed(&source, error::packager_error(&source, e));
            let Some(aes_key) = aes_key else {
                if let Some(len) = rendition.segment_len(k - 1) {
                    announce(len);
                }
                return rendition
                    .write_segment(k - 1, out)
                    .map(|_| ())
                    .map_err(failed);
            };
            if let Some(len) = rendition.segment_len(k - 1) {
                announce(encrypt::encrypted_len(len));
            }
            // Media sequence numbers start at 1, as K does.
            let mut sealing =
                encrypt::Encrypting::new(&aes_key, &encrypt::sequence_iv(k as u64), out);
            rendition
                .write_segment(k - 1, &mut sealing)
                .map_err(failed)?;
            sealing
                .finish()
                .map_err(|e| OriginError::Internal(format!("writing segment {k}: {e}")))
        })
    }

    /// The AES-128 key id and key of the source at `rel`, when its streams
    /// are protected (`[protection]`).
    fn sealed(&self, rel: &str) -> Option<(&str, encrypt::Key)> {
        let protection = self.protection.as_ref().filter(|p| p.covers(rel))?;
        Some((protection.key_id(), protection.current_key(rel)))
    }

    /// What a cache key of the source at `rel` says of its protection:
    /// nothing for clear streams (their keys are as they always were).
    fn sealed_part(&self, rel: &str) -> String {
        key_part(self.sealed(rel).map(|(key_id, _)| key_id))
    }

    /// What the key named in a segment's URL (`key_id`) is for the source
    /// at `rel`, got by `key` from its protection: none for a clear stream
    /// named without one; a protected stream's segment names its secret
    /// (so that a rotated secret never changes the bytes of a URL), and a
    /// name that does not fit the stream is not found.
    fn named_key<T>(
        &self,
        rel: &str,
        key_id: Option<&str>,
        key: impl Fn(&protection::Protection, &str) -> Option<T>,
    ) -> Result<Option<T>, OriginError> {
        let protection = self.protection.as_ref().filter(|p| p.covers(rel));
        match (protection, key_id) {
            (None, None) => Ok(None),
            (Some(p), Some(id)) => key(p, id)
                .map(Some)
                .ok_or_else(|| OriginError::NotFound(format!("{rel}: no key {id}"))),
            (Some(p), None) => Err(OriginError::NotFound(format!(
                "{rel}: protected: its segments are named with their secret's id (_{})",
                p.key_id()
            ))),
            (None, Some(id)) => Err(OriginError::NotFound(format!(
                "{rel}: not protected: no segment of key {id}"
            ))),
        }
    }

    /// The AES-128 key of the source at `rel` under the secret `key_id`:
    /// 16 bytes, kept nowhere (derived again for each request).
    fn aes_key(&self, rel: &str, key_id: &str) -> Result<Answer, OriginError> {
        let not_found = || OriginError::NotFound(format!("{rel}: no key {key_id}"));
        let protection = self
            .protection
            .as_ref()
            .filter(|p| p.covers(rel))
            .ok_or_else(not_found)?;
        let key = protection.key(key_id, rel).ok_or_else(not_found)?;
        // Only of a source that exists: no keys for made-up paths.
        let source = self.resolve(rel)?;
        Ok(from_memory(
            Arc::new(key.to_vec()),
            State::Miss,
            cache::etag_of(&format!("key|{key_id}|{}", source.key_part())),
            KEY_TYPE,
            last_modified(std::slice::from_ref(&source)),
        ))
    }

    /// As [`Origin::get`], for an object whose length `make` announces
    /// before its first byte ([`Cache::get_or_stream`]).
    fn stream(
        &self,
        spec: &ObjectSpec,
        content_type: &'static str,
        ready: Option<&dyn Fn(Answer)>,
        make: impl Fn(&mut dyn std::io::Write, &dyn Fn(u64)) -> Result<(), OriginError>,
    ) -> Result<Answer, OriginError> {
        let last_modified = last_modified(spec.sources);
        let answer = |object| Answer {
            object,
            content_type,
            last_modified,
        };
        let answered = ready.map(|ready| move |object| ready(answer(object)));
        let answered = answered.as_ref().map(|f| f as &dyn Fn(Object));
        let (object, _) = self.cache.get_or_stream(spec, answered, make)?;
        Ok(answer(object))
    }

    fn resolve(&self, rel: &str) -> Result<SourceId, OriginError> {
        Ok(self.inputs.resolve(rel)?)
    }

    fn get(
        &self,
        spec: &ObjectSpec,
        content_type: &'static str,
        make: impl Fn(&mut dyn std::io::Write) -> Result<(), OriginError>,
    ) -> Result<Answer, OriginError> {
        let (object, _) = self.cache.get_or_make(spec, make)?;
        Ok(Answer {
            object,
            content_type,
            last_modified: last_modified(spec.sources),
        })
    }

    /// A cache key: format version, what, segment duration, then `parts`.
    fn key(&self, what: &str, parts: &[&str]) -> String {
        object_key(what, &self.config.media.segment_duration, parts)
    }

    /// The parsed source, if MPEG-TS can carry its codecs.
    fn ts_rendition(&self, source: &SourceId) -> Result<Arc<Rendition>, OriginError> {
        let rendition = self.rendition(source)?;
        match rendition.index().ts_refusal() {
            // Whatever the file's age: it is its codecs, not its state.
            Some(why) => Err(OriginError::Unprocessable(format!("{}: {why}", source.rel))),
            None => Ok(rendition),
        }
    }

    fn rendition_of_kind(
        &self,
        source: &SourceId,
        kind: &str,
    ) -> Result<Arc<Rendition>, OriginError> {
        let rendition = self.ts_rendition(source)?;
        if rendition.kind() == kind {
            return Ok(rendition);
        }
        let key = (source.clone(), kind.to_string());
        if let Some(part) = self.parts.lock().expect("parts lock").get(&key) {
            return Ok(Arc::clone(part));
        }
        let part = rendition.part(kind).map(Arc::new).ok_or_else(|| {
            OriginError::NotFound(format!(
                "{} is `{}` and has no `{kind}` track",
                source.rel,
                rendition.kind()
            ))
        })?;
        let mut parts = self.parts.lock().expect("parts lock");
        let bytes: usize = parts.values().map(|p| p.index().memory_bytes()).sum();
        if parts.len() >= PARTS_IN_MEMORY
            || bytes + part.index().memory_bytes() > PARTS_MEMORY_BYTES
        {
            parts.clear();
        }
        parts.insert(key, Arc::clone(&part));
        Ok(part)
    }
}

/// An answer of bytes in memory.
fn from_memory(
    bytes: Arc<Vec<u8>>,
    state: State,
    etag: String,
    content_type: &'static str,
    last_modified: i64,
) -> Answer {
    Answer {
        object: Object {
            len: bytes.len() as u64,
            body: Body::Bytes(bytes),
            state,
            etag,
        },
        content_type,
        last_modified,
    }
}

/// The backends of `config`'s `[[sources]]`, with `media.root` for the rest.
/// (`Config::load` checked them, credentials included.)
fn sources_of(config: &Config) -> Sources {
    let timeouts = Timeouts {
        connect: config.remote.connect_timeout.as_std(),
        transfer: config.remote.timeout.as_std(),
    };
    let env = |name: &str| std::env::var(name).ok();
    let backends = config
        .sources
        .iter()
        .map(|s| {
            let kind = match s.kind {
                SourceType::Filesystem => BackendKind::Filesystem(s.root.clone().expect("checked")),
                SourceType::Http => BackendKind::Remote(Box::new(Store::http(
                    s.url.as_deref().expect("checked"),
                    timeouts,
                ))),
                SourceType::S3 => BackendKind::Remote(Box::new(Store::s3(
                    S3Bucket {
                        endpoint: s
                            .endpoint
                            .as_deref()
                            .expect("checked")
                            .trim_end_matches('/')
                            .to_string(),
                        region: s.region.clone().unwrap_or_else(|| "us-east-1".into()),
                        bucket: s.bucket.clone().expect("checked"),
                        key_prefix: s.key_prefix.clone().unwrap_or_default(),
                        path_style: s.path_style.unwrap_or(false),
                        credentials: s.credentials(&env).expect("checked"),
                    },
                    timeouts,
                ))),
            };
            Backend {
                prefix: s.prefix.clone(),
                kind,
                copy: s.copies(),
            }
        })
        .collect();
    Sources::new(backends, config.media.root.clone())
}

fn input_settings(config: &Config) -> InputSettings {
    InputSettings {
        revalidate: config.remote.revalidate.as_std(),
        max_copies: config.remote.copies,
        input_max_bytes: config.cache.input_max_size.0,
        min_free_bytes: config.cache.min_free.0,
    }
}

/// Newest modification time of `sources`, seconds since the epoch.
fn last_modified(sources: &[SourceId]) -> i64 {
    sources
        .iter()
        .map(|s| s.mtime_ns.div_euclid(1_000_000_000))
        .max()
        .unwrap_or(0)
}

/// The key of a master, with its filter's part if it has one.
fn filtered(key: String, filter: Option<&url::MasterFilter>) -> String {
    match filter {
        Some(filter) => format!("{key}|b={}", filter.canonical()),
        None => key,
    }
}

/// The cache key of an object: `v<format>|<what>|<segment duration>|`
/// then `parts`, joined by `|`. Written in one go: a playlist's key is
/// worked out for every request for it.
fn object_key(what: &str, segment_duration: &dyn std::fmt::Display, parts: &[&str]) -> String {
    use std::fmt::Write;
    let mut key = String::with_capacity(32 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    let _ = write!(key, "v{FORMAT_VERSION}|{what}|{segment_duration}|");
    for (n, part) in parts.iter().enumerate() {
        if n > 0 {
            key.push('|');
        }
        key.push_str(part);
    }
    key
}

/// What a cache key says of the secret `key_id` an object is encrypted
/// with: nothing for a clear one.
fn key_part(key_id: Option<&str>) -> String {
    key_id.map_or(String::new(), |id| format!("|aes-128:{id}"))
}

fn write_all(out: &mut dyn std::io::Write, bytes: &[u8]) -> Result<(), OriginError> {
    out.write_all(bytes)
        .map_err(|e| OriginError::Internal(CacheError::io("writing", e).to_string()))
}

/// The full URL path of the master playlist of `path`: a source or csmil
/// path, with or without the prefix and `/master.m3u8`.
pub fn master_path(config: &Config, path: &str) -> String {
    let prefix = &config.server.prefix;
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut full = if path.starts_with(prefix.as_str())
        || path.starts_with(config.server.cmaf_prefix.as_str())
    {
        path.to_string()
    } else {
        format!("{prefix}{}", path.trim_start_matches('/'))
    };
    if !full.ends_with("/master.m3u8") && !full.ends_with("/manifest.mpd") {
        full = format!("{}/master.m3u8", full.trim_end_matches('/'));
    }
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_keep_their_layout() {
        // Keys name what is in the cache: a change would orphan it.
        assert_eq!(
            object_key("playlist", &6.0, &["", "0", "av", "a.mp4:1:2:3:4"]),
            format!("v{FORMAT_VERSION}|playlist|6||0|av|a.mp4:1:2:3:4")
        );
        assert_eq!(
            object_key("x", &2.5, &[]),
            format!("v{FORMAT_VERSION}|x|2.5|")
        );
    }
}
