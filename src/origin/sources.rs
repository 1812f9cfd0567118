//! Parsed sources: each source's index and segment plan, from memory, from
//! the cache (a restarted origin skips the moov work), or read from the
//! file; and failures, remembered for a while so that a corrupt file is
//! not parsed again on every request for it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::error::{packager_error, OriginError, RETRY_AFTER_SECONDS};
use super::Origin;
use crate::cache::{Input, ObjectSpec, SourceId};
use crate::packager::index::MediaIndex;
use crate::packager::media::MediaSource;
use crate::packager::rendition::Rendition;
use crate::packager::{index_codec, mp4};

/// Parsed sources kept in memory: at most this many ...
const RENDITIONS_IN_MEMORY: usize = 64;
/// ... and at most this many bytes of sample index between them.
const RENDITION_MEMORY_BYTES: usize = 512 << 20;

/// Remembered failures: at most this many sources.
const FAILURES_REMEMBERED: usize = 4096;

/// A source modified this recently that fails to parse is taken to be
/// still being written (a copy in progress): 503, not 422.
const SETTLE_TIME: Duration = Duration::from_secs(10);

/// Parsed sources, least recently used out first.
#[derive(Default)]
pub(super) struct Parsed {
    map: HashMap<SourceId, Kept>,
    bytes: usize,
}

struct Kept {
    rendition: Arc<Rendition>,
    /// What the rendition reads.
    input: Arc<Input>,
    used: u64,
}

impl Parsed {
    fn remove(&mut self, source: &SourceId) {
        if let Some(kept) = self.map.remove(source) {
            self.bytes -= kept.rendition.index().memory_bytes();
        }
    }
}

/// An input, as the packager reads it.
struct Media(Arc<Input>);

impl MediaSource for Media {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn will_read(&self, spans: &[(u64, usize)]) {
        self.0.read_ahead(spans)
    }
}

impl Origin {
    /// The parsed source, from memory or read now. A source that failed
    /// recently fails again at once, with the same error.
    pub fn rendition(&self, source: &SourceId) -> Result<Arc<Rendition>, OriginError> {
        let tick = self.uses.fetch_add(1, Ordering::Relaxed);
        {
            let mut parsed = self.parsed.lock().expect("parsed lock");
            if let Some(kept) = parsed.map.get_mut(source) {
                // A copy in the input cache that gc or invalidate removed
                // is not read from any more: the source is opened again.
                if !kept.input.is_gone() {
                    kept.used = tick;
                    return Ok(Arc::clone(&kept.rendition));
                }
                parsed.remove(source);
            }
        }
        if let Some(e) = self.remembered_failure(source) {
            tracing::debug!("{}: failed recently, not read again: {e}", source.rel);
            return Err(e);
        }
        let rendition = self.open(source).map_err(|e| {
            let e = self.failed(source, e);
            // Only a source that cannot be opened or parsed is remembered:
            // one bad segment leaves the rest of the source alone.
            if matches!(e, OriginError::Unprocessable(_)) {
                self.remember_failure(source, &e);
            }
            e
        })?;
        let (rendition, input) = rendition;
        let rendition = Arc::new(rendition);
        self.keep(
            source,
            Kept {
                rendition: Arc::clone(&rendition),
                input,
                used: tick,
            },
        );
        Ok(rendition)
    }

    fn open(&self, source: &SourceId) -> Result<(Rendition, Arc<Input>), OriginError> {
        let input = self.inputs.open(source)?;
        let index = self.index(source, &input)?;
        let name = if source.is_remote() {
            std::path::PathBuf::from(&source.rel)
        } else {
            source.path.clone()
        };
        let media: Arc<dyn MediaSource> = Arc::new(Media(Arc::clone(&input)));
        let rendition =
            Rendition::from_index(&name, media, index, self.config.media.segment_duration);
        Ok((rendition, input))
    }

    /// The index of `source`, from the cache or read from `file` and
    /// stored. An index from the cache is checked as a freshly read one
    /// is; one that fails the check is read again from the source.
    fn index(&self, source: &SourceId, input: &Arc<Input>) -> Result<MediaIndex, OriginError> {
        let read = || {
            let media = Media(Arc::clone(input));
            let index = mp4::read_index_from(&media, source.size);
            input.forget_read_ahead();
            index.map_err(|e| packager_error(source, e))
        };
        let spec = ObjectSpec {
            // An index of another encoding is another object, not a
            // failure to read this one.
            key: self.key(
                "index",
                &[&format!("cpix{}", index_codec::VERSION), &source.key_part()],
            ),
            kind: "index",
            ext: "idx",
            sources: std::slice::from_ref(source),
        };
        let (object, made) = self.cache.get_or_make(&spec, |out| {
            let index = read()?;
            out.write_all(&index_codec::encode(&index))
                .map_err(|e| packager_error(source, e.into()))?;
            Ok(index)
        })?;
        if let Some(index) = made {
            tracing::debug!("{}: index read from the file", source.rel);
            return Ok(index);
        }
        let bytes = object
            .into_bytes()
            .map_err(|e| OriginError::Internal(format!("reading the cache: {e}")))?;
        // The index must also be of this file's length: its samples were
        // checked against it.
        let decoded = index_codec::decode(&bytes).and_then(|index| {
            if index.file_len == source.size {
                Ok(index)
            } else {
                Err(crate::packager::error::Error::Unsupported(format!(
                    "made for a file of {} bytes, not {}",
                    index.file_len, source.size
                )))
            }
        });
        match decoded {
            Ok(index) => {
                tracing::debug!("{}: index from the cache", source.rel);
                Ok(index)
            }
            Err(e) => {
                tracing::warn!(
                    "{}: cached index unusable ({e}), reading the source",
                    source.rel
                );
                let index = read()?;
                tracing::debug!("{}: index read from the file", source.rel);
                Ok(index)
            }
        }
    }

    fn keep(&self, source: &SourceId, kept: Kept) {
        let bytes = kept.rendition.index().memory_bytes();
        let mut parsed = self.parsed.lock().expect("parsed lock");
        while !parsed.map.is_empty()
            && (parsed.map.len() >= RENDITIONS_IN_MEMORY
                || parsed.bytes + bytes > RENDITION_MEMORY_BYTES)
        {
            let oldest = parsed
                .map
                .iter()
                .min_by_key(|(_, kept)| kept.used)
                .map(|(k, _)| k.clone())
                .expect("not empty");
            parsed.remove(&oldest);
        }
        parsed.remove(source);
        parsed.bytes += bytes;
        parsed.map.insert(source.clone(), kept);
    }

    /// What a failure to make something of `source` is answered with: 503
    /// when the source is changing under us (it will be whole soon), else
    /// `e`.
    pub(super) fn failed(&self, source: &SourceId, e: OriginError) -> OriginError {
        if !matches!(e, OriginError::Unprocessable(_) | OriginError::Internal(_)) {
            return e;
        }
        if is_changing(source) {
            return OriginError::Unavailable {
                reason: format!("{}: the file is being written ({e})", source.rel),
                retry_after_seconds: RETRY_AFTER_SECONDS,
            };
        }
        e
    }

    fn remembered_failure(&self, source: &SourceId) -> Option<OriginError> {
        let failures = self.failures.lock().expect("failures lock");
        let (at, e) = failures.get(&source.key_part())?;
        (at.elapsed() < self.config.media.failure_ttl.as_std()).then(|| e.clone())
    }

    fn remember_failure(&self, source: &SourceId, e: &OriginError) {
        let ttl = self.config.media.failure_ttl.as_std();
        if ttl.is_zero() {
            return;
        }
        let mut failures = self.failures.lock().expect("failures lock");
        if failures.len() >= FAILURES_REMEMBERED {
            failures.retain(|_, (at, _)| at.elapsed() < ttl);
            if failures.len() >= FAILURES_REMEMBERED {
                failures.clear();
            }
        }
        failures.insert(source.key_part(), (Instant::now(), e.clone()));
    }
}

/// Whether `source` changed since it was resolved, or was modified so
/// recently that it may still be being written.
fn is_changing(source: &SourceId) -> bool {
    // A remote object is replaced whole, never seen half-written.
    if source.is_remote() {
        return false;
    }
    if !source.is_current() {
        return true;
    }
    let modified = std::time::UNIX_EPOCH + Duration::from_nanos(source.mtime_ns.max(0) as u64);
    SystemTime::now()
        .duration_since(modified)
        .map_or(true, |age| age < SETTLE_TIME)
}

pub(super) type Failures = Mutex<HashMap<String, (Instant, OriginError)>>;
pub(super) type ParsedSources = Mutex<Parsed>;
