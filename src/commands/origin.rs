//! The origin: an MSOD URL path in, the bytes of a playlist or segment out,
//! through the cache. `serve` puts HTTP around it; `master` and the cache
//! mode of `package` call it directly.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

use casterpak::packager::error::Error as PackagerError;
use casterpak::packager::index::MediaIndex;
use casterpak::packager::rendition::Rendition;
use casterpak::packager::url::{self, Target, UrlError};
use casterpak::packager::{hls, index_codec, mp4, FORMAT_VERSION};

use crate::cache::{self, Cache, CacheError, Failure, Object, ObjectSpec, SourceId};
use crate::config::Config;

/// Parsed sources kept in memory (the moov work), most recently used first out.
const RENDITIONS_IN_MEMORY: usize = 64;

/// What went wrong, by HTTP status: the one place errors become statuses.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// Unsupported or corrupt media.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Internal(String),
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl OriginError {
    pub fn status(&self) -> u16 {
        match self {
            OriginError::BadRequest(_) => 400,
            OriginError::NotFound(_) => 404,
            OriginError::Unprocessable(_) => 422,
            OriginError::Internal(_) => 500,
            OriginError::MethodNotAllowed => 405,
        }
    }
}

impl From<UrlError> for OriginError {
    fn from(e: UrlError) -> Self {
        match e {
            UrlError::Malformed(m) => OriginError::BadRequest(m),
            UrlError::NotFound(m) => OriginError::NotFound(m),
        }
    }
}

impl From<CacheError> for OriginError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::NotFound(path) => OriginError::NotFound(format!("no such file: {path}")),
            other => OriginError::Internal(other.to_string()),
        }
    }
}

fn packager_error(source: &SourceId, e: PackagerError) -> OriginError {
    match e {
        PackagerError::NotFound(m) => OriginError::NotFound(m),
        PackagerError::Io(e) => OriginError::Internal(format!("{}: {e}", source.rel)),
        other => OriginError::Unprocessable(format!("{}: {other}", source.rel)),
    }
}

impl From<Failure<OriginError>> for OriginError {
    fn from(f: Failure<OriginError>) -> Self {
        match f {
            Failure::Make(e) => e,
            Failure::Cache(e) => e.into(),
        }
    }
}

pub struct Answer {
    pub object: Object,
    pub content_type: &'static str,
    /// Newest modification time of the sources, seconds since the epoch.
    pub last_modified: i64,
}

pub struct Origin {
    config: Config,
    cache: Cache,
    renditions: Mutex<HashMap<SourceId, (Arc<Rendition>, u64)>>,
    uses: std::sync::atomic::AtomicU64,
}

impl Origin {
    pub fn new(config: Config, cache: Cache) -> Origin {
        Origin {
            config,
            cache,
            renditions: Mutex::default(),
            uses: Default::default(),
        }
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Answers a URL path (with the prefix, without the query string).
    pub fn answer(&self, path: &str) -> Result<Answer, OriginError> {
        let rest = path
            .strip_prefix(self.config.server.prefix.as_str())
            .ok_or_else(|| {
                OriginError::NotFound(format!("{path}: not under {}", self.config.server.prefix))
            })?;
        let request = url::parse(rest)?;
        // Where relative URIs in playlists resolve: the directory of `path`.
        let uri_prefix = match self.config.server.base_url.trim_end_matches('/') {
            "" => String::new(),
            base => format!("{base}{}/", &path[..path.rfind('/').expect("has a slash")]),
        };
        match &request.target {
            Target::Master => self.master(&request.sources, &uri_prefix),
            Target::MediaPlaylist { n, kind } => {
                self.media_playlist(&request.sources[*n], *n, kind, &uri_prefix)
            }
            Target::Segment { k, n, kind } => self.segment(&request.sources[*n], *k, kind),
        }
    }

    fn master(&self, rels: &[String], uri_prefix: &str) -> Result<Answer, OriginError> {
        let mut sources = Vec::new();
        let mut numbers = Vec::new();
        for (n, rel) in rels.iter().enumerate() {
            match cache::resolve_local(&self.config.media.root, rel) {
                Ok(source) => {
                    sources.push(source);
                    numbers.push(n);
                }
                Err(CacheError::NotFound(_)) if rels.len() > 1 => {
                    tracing::info!(
                        "{rel}: listed in a csmil URL but missing, left out of the master"
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        if sources.is_empty() {
            return Err(OriginError::NotFound(format!(
                "none of the {} files exists",
                rels.len()
            )));
        }
        let ids: Vec<String> = numbers
            .iter()
            .zip(&sources)
            .map(|(n, s)| format!("{n}={}", s.key_part()))
            .collect();
        let key = self.key("master", &[uri_prefix, &ids.join("|")]);
        let make = || {
            let mut variants = Vec::with_capacity(sources.len());
            for (n, source) in numbers.iter().zip(&sources) {
                variants.push((*n, self.rendition(source)?.variant()));
            }
            Ok(hls::master_playlist(&variants, uri_prefix).into_bytes())
        };
        self.get(
            ObjectSpec {
                key,
                kind: "playlist",
                ext: "m3u8",
                sources: &sources,
            },
            make,
            PLAYLIST_TYPE,
        )
    }

    fn media_playlist(
        &self,
        rel: &str,
        n: usize,
        kind: &str,
        uri_prefix: &str,
    ) -> Result<Answer, OriginError> {
        let source = cache::resolve_local(&self.config.media.root, rel)?;
        let key = self.key(
            "playlist",
            &[uri_prefix, &n.to_string(), kind, &source.key_part()],
        );
        let make = || {
            let rendition = self.rendition_of_kind(&source, kind)?;
            Ok(rendition.media_playlist(n, uri_prefix).into_bytes())
        };
        self.get(
            ObjectSpec {
                key,
                kind: "playlist",
                ext: "m3u8",
                sources: std::slice::from_ref(&source),
            },
            make,
            PLAYLIST_TYPE,
        )
    }

    fn segment(&self, rel: &str, k: usize, kind: &str) -> Result<Answer, OriginError> {
        let source = cache::resolve_local(&self.config.media.root, rel)?;
        let key = self.key("segment", &[&k.to_string(), kind, &source.key_part()]);
        let make = || {
            let rendition = self.rendition_of_kind(&source, kind)?;
            rendition
                .segment(k - 1)
                .map_err(|e| packager_error(&source, e))
        };
        self.get(
            ObjectSpec {
                key,
                kind: "segment",
                ext: "ts",
                sources: std::slice::from_ref(&source),
            },
            make,
            SEGMENT_TYPE,
        )
    }

    fn get(
        &self,
        spec: ObjectSpec,
        make: impl Fn() -> Result<Vec<u8>, OriginError>,
        content_type: &'static str,
    ) -> Result<Answer, OriginError> {
        let last_modified = spec
            .sources
            .iter()
            .map(|s| s.mtime_ns / 1_000_000_000)
            .max()
            .unwrap_or(0);
        let object = self.cache.get_or_make(&spec, make)?;
        Ok(Answer {
            object,
            content_type,
            last_modified,
        })
    }

    /// A cache key: format version, what, segment duration, then `parts`.
    fn key(&self, what: &str, parts: &[&str]) -> String {
        format!(
            "v{FORMAT_VERSION}|{what}|{}|{}",
            self.config.media.segment_duration,
            parts.join("|")
        )
    }

    fn rendition_of_kind(
        &self,
        source: &SourceId,
        kind: &str,
    ) -> Result<Arc<Rendition>, OriginError> {
        let rendition = self.rendition(source)?;
        let actual = rendition.index().kind_suffix();
        if actual != kind {
            return Err(OriginError::NotFound(format!(
                "{} is `{actual}`, not `{kind}`",
                source.rel
            )));
        }
        Ok(rendition)
    }

    /// The parsed source, from memory or read now.
    pub fn rendition(&self, source: &SourceId) -> Result<Arc<Rendition>, OriginError> {
        let tick = self.uses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some((r, used)) = self
            .renditions
            .lock()
            .expect("renditions lock")
            .get_mut(source)
        {
            *used = tick;
            return Ok(Arc::clone(r));
        }
        let file = File::open(&source.path).map_err(|e| packager_error(source, e.into()))?;
        let index = self.index(source, &file)?;
        let rendition = Arc::new(Rendition::from_index(
            &source.path,
            file,
            index,
            self.config.media.segment_duration,
        ));
        let mut map = self.renditions.lock().expect("renditions lock");
        if map.len() >= RENDITIONS_IN_MEMORY {
            let oldest = map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        map.insert(source.clone(), (Arc::clone(&rendition), tick));
        Ok(rendition)
    }
}

impl Origin {
    /// The index of `source`, from the cache (so that a restart skips the
    /// moov work) or read from `file` and stored.
    fn index(&self, source: &SourceId, file: &File) -> Result<MediaIndex, OriginError> {
        let parsed = Mutex::new(None);
        let make = || {
            let index = mp4::read_index(file).map_err(|e| packager_error(source, e))?;
            let bytes = index_codec::encode(&index);
            *parsed.lock().expect("lock") = Some(index);
            Ok(bytes)
        };
        let key = self.key("index", &[&source.key_part()]);
        let spec = ObjectSpec {
            key,
            kind: "index",
            ext: "idx",
            sources: std::slice::from_ref(source),
        };
        let object = self.cache.get_or_make(&spec, make)?;
        if let Some(index) = parsed.into_inner().expect("lock") {
            return Ok(index);
        }
        let bytes = object
            .into_bytes()
            .map_err(|e| OriginError::Internal(format!("reading the cache: {e}")))?;
        index_codec::decode(&bytes).or_else(|e| {
            tracing::warn!(
                "{}: cached index unreadable ({e}), reading the source",
                source.rel
            );
            mp4::read_index(file).map_err(|e| packager_error(source, e))
        })
    }
}

pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
pub const SEGMENT_TYPE: &str = "video/mp2t";
