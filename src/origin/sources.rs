//! Parsed sources: each source's index and segment plan, from memory, from
//! the cache (a restarted origin skips the moov work), or read from the
//! file; and failures, remembered for a while so that a corrupt file is
//! not parsed again on every request for it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::error::{packager_error, OriginError, RETRY_AFTER_SECONDS};
use super::Origin;
use crate::cache::flight::{Flights, Role};
use crate::cache::{Cache, CacheError, Input, ObjectSpec, SourceId};
use crate::packager::index::MediaIndex;
use crate::packager::media::MediaSource;
use crate::packager::rendition::Rendition;
use crate::packager::{index_codec, mp4, segment};

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

    fn reads_are_remote(&self) -> bool {
        self.0.reads_are_remote()
    }
}

impl Origin {
    /// The parsed source, from memory or read now. A source that failed
    /// recently fails again at once, with the same error.
    pub fn rendition(&self, source: &SourceId) -> Result<Arc<Rendition>, OriginError> {
        loop {
            if let Some(kept) = self.kept(source) {
                return Ok(kept);
            }
            if let Some(e) = self.remembered_failure(source) {
                tracing::debug!("{}: failed recently, not read again: {e}", source.rel);
                return Err(e);
            }
            // Concurrent first requests for a source read it once.
            match self.opening.join(&source.key_part(), self.cache.wait()) {
                Role::Leader(leader) => {
                    let opened = match self.kept(source) {
                        Some(kept) => Ok(kept),
                        None => self.open_and_keep(source),
                    };
                    leader.finish(Some(opened.clone()));
                    return opened;
                }
                // What the leader got, failure included.
                Role::Follower(Some(opened)) => return opened,
                // The leader panicked: this request tries itself.
                Role::Follower(None) | Role::Stored => continue,
                Role::TimedOut => return Err(CacheError::Busy(self.cache.wait()).into()),
            }
        }
    }

    /// The segment count and kind (`av`, `a`, `v`) of the parsed source at
    /// `rel` (the URL's path), if one is in memory: without looking at the
    /// file again, so it may be that of a file replaced a moment ago (a
    /// hint, never an answer).
    pub(super) fn kept_outline(&self, rel: &str) -> Option<(usize, String)> {
        let parsed = self.parsed.lock().expect("parsed lock");
        parsed
            .map
            .iter()
            .filter(|(source, _)| source.rel == rel)
            .max_by_key(|(_, kept)| kept.used)
            .map(|(_, kept)| {
                let rendition = &kept.rendition;
                (rendition.segment_count(), rendition.kind().to_string())
            })
    }

    /// The parsed source, if it is in memory and still readable.
    pub(super) fn kept(&self, source: &SourceId) -> Option<Arc<Rendition>> {
        let tick = self.uses.fetch_add(1, Ordering::Relaxed);
        let mut parsed = self.parsed.lock().expect("parsed lock");
        let kept = parsed.map.get_mut(source)?;
        // A copy in the input cache that gc or invalidate removed is not
        // read from any more: the source is opened again.
        if kept.input.is_gone() {
            parsed.remove(source);
            return None;
        }
        kept.used = tick;
        Some(Arc::clone(&kept.rendition))
    }

    fn open_and_keep(&self, source: &SourceId) -> Result<Arc<Rendition>, OriginError> {
        let (rendition, input, index_to_store) = self.open(source).map_err(|e| {
            let e = self.failed(source, e);
            // Only a source that cannot be opened or parsed is remembered:
            // one bad segment leaves the rest of the source alone.
            if matches!(e, OriginError::Unprocessable(_)) {
                self.remember_failure(source, &e);
            }
            e
        })?;
        let rendition = Arc::new(rendition);
        let tick = self.uses.fetch_add(1, Ordering::Relaxed);
        self.keep(
            source,
            Kept {
                rendition: Arc::clone(&rendition),
                input,
                used: tick,
            },
        );
        if let Some(key) = index_to_store {
            self.index_writer
                .store(key, source.clone(), Arc::clone(&rendition));
        }
        Ok(rendition)
    }

    /// The source's rendition and input, and the cache key its index is
    /// to be stored under when it was read from the file.
    fn open(
        &self,
        source: &SourceId,
    ) -> Result<(Rendition, Arc<Input>, Option<String>), OriginError> {
        let input = self.inputs.open(source)?;
        let (index, index_to_store) = self.index(source, &input)?;
        let name = if source.is_remote() {
            std::path::PathBuf::from(&source.rel)
        } else {
            source.path.clone()
        };
        let media: Arc<dyn MediaSource> = Arc::new(Media(Arc::clone(&input)));
        let rendition =
            Rendition::from_index(&name, media, index, self.config.media.segment_duration);
        Ok((rendition, input, index_to_store))
    }

    /// The index of `source`, from the cache or read from the file; with
    /// the key to store it under when it was read (it is stored after the
    /// answer, see [`IndexWriter`]). An index from the cache is checked as
    /// a freshly read one is; one that fails the check is read again.
    fn index(
        &self,
        source: &SourceId,
        input: &Arc<Input>,
    ) -> Result<(MediaIndex, Option<String>), OriginError> {
        let read = || {
            let media = Media(Arc::clone(input));
            let target = segment::target_90k(self.config.media.segment_duration);
            let index = mp4::read_index_from(&media, source.size, target);
            input.forget_read_ahead();
            index.map_err(|e| packager_error(source, e))
        };
        // An index of another encoding is another object, not a failure to
        // read this one.
        let key = self.key(
            "index",
            &[&format!("cpix{}", index_codec::VERSION), &source.key_part()],
        );
        let Some(object) = self.cache.find(&key)? else {
            self.cache.count_miss();
            let index = read()?;
            tracing::debug!("{}: index read from the file", source.rel);
            return Ok((index, Some(key)));
        };
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
                Ok((index, None))
            }
            Err(e) => {
                tracing::warn!(
                    "{}: cached index unusable ({e}), reading the source",
                    source.rel
                );
                let index = read()?;
                tracing::debug!("{}: index read from the file", source.rel);
                Ok((index, None))
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
/// Sources being read, by [`SourceId::key_part`].
pub(super) type Opening = Flights<Result<Arc<Rendition>, OriginError>>;

/// Indexes on their way to the writer thread, at most; beyond, one is left
/// unstored (a restarted origin reads that file's moov again). The thread
/// takes them at once, to wait there (see [`INDEX_WRITES_WAITING`]).
const INDEX_WRITES_QUEUED: usize = 16;

/// Indexes waiting out [`INDEX_STORE_DELAY`], at most, and the memory
/// their renditions may hold (each keeps its rendition in memory): beyond
/// either, the oldest is stored at once. A burst of first plays, or
/// `package` warming many files, waits here rather than dropping indexes.
const INDEX_WRITES_WAITING: usize = 256;
const INDEX_WAITING_BYTES: usize = 128 << 20;

/// How long after its file was read an index is stored: past a player's
/// first requests, which come within this of the master that read it (its
/// media playlist and first segments) and would otherwise share the
/// machine with the writing. On 2 cores, the first play of the 2-hour file
/// (master, playlist, segment 1) took 26.7 ms with the index stored 0.3 s
/// later, against 31.3 ms stored at once (medians of 10).
const INDEX_STORE_DELAY: Duration = Duration::from_secs(1);

/// Stores indexes read from files in the cache, on a thread of its own, so
/// that the request that read one does not wait for it: a 2-hour file's
/// index is 12 MB, and writing it took longer than reading the moov.
pub(super) struct IndexWriter {
    cache: Arc<Cache>,
    queue: Mutex<Option<SyncSender<IndexMessage>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Jobs queued, waiting or running, for [`IndexWriter::wait_idle`].
    pending: Arc<(Mutex<usize>, Condvar)>,
    /// Set when the origin finishes: what is queued is stored at once,
    /// without [`INDEX_STORE_DELAY`].
    hurry: Arc<AtomicBool>,
}

enum IndexMessage {
    Store(IndexJob),
    /// Wakes the thread to see [`IndexWriter::hurry`].
    Hurry,
}

struct IndexJob {
    key: String,
    source: SourceId,
    rendition: Arc<Rendition>,
    queued: Instant,
}

impl IndexWriter {
    pub(super) fn new(cache: Arc<Cache>) -> IndexWriter {
        IndexWriter {
            cache,
            queue: Mutex::new(None),
            thread: Mutex::new(None),
            pending: Arc::default(),
            hurry: Arc::default(),
        }
    }

    fn store(&self, key: String, source: SourceId, rendition: Arc<Rendition>) {
        let job = IndexJob {
            key,
            source,
            rendition,
            queued: Instant::now(),
        };
        let mut queue = self.queue.lock().expect("index queue lock");
        if queue.is_none() {
            *queue = self.start();
        }
        let Some(sender) = queue.as_ref() else {
            // No thread to spare (a thread limit): stored now, as it is.
            drop(queue);
            write_index(&self.cache, &job);
            return;
        };
        *self.pending.0.lock().expect("pending lock") += 1;
        match sender.try_send(IndexMessage::Store(job)) {
            Ok(()) => {}
            Err(TrySendError::Full(IndexMessage::Store(job))) => {
                self.done();
                tracing::debug!("{}: index not stored, too many queued", job.source.rel);
            }
            Err(TrySendError::Disconnected(IndexMessage::Store(job))) => {
                // The thread is gone: a new one for the next.
                self.done();
                *queue = None;
                drop(queue);
                write_index(&self.cache, &job);
            }
            Err(_) => unreachable!("a job was sent"),
        }
    }

    fn start(&self) -> Option<SyncSender<IndexMessage>> {
        let (sender, messages) = mpsc::sync_channel::<IndexMessage>(INDEX_WRITES_QUEUED);
        let cache = Arc::clone(&self.cache);
        let pending = Arc::clone(&self.pending);
        let hurry = Arc::clone(&self.hurry);
        let started = std::thread::Builder::new()
            .name("index-writer".into())
            .spawn(move || {
                crate::cache::housekeeping::lower_priority();
                let store = |job: IndexJob| {
                    // A bug storing one index leaves the others to store.
                    let stored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        write_index(&cache, &job)
                    }));
                    if stored.is_err() {
                        tracing::error!("{}: storing its index panicked", job.source.rel);
                    }
                    let (count, idle) = &*pending;
                    *count.lock().expect("pending lock") -= 1;
                    idle.notify_all();
                };
                let mut waiting: VecDeque<IndexJob> = VecDeque::new();
                let mut waiting_bytes = 0;
                let bytes = |job: &IndexJob| job.rendition.index().memory_bytes();
                loop {
                    // What is due, in the order it came.
                    while let Some(first) = waiting.front() {
                        let due = hurry.load(Ordering::Relaxed)
                            || waiting.len() > INDEX_WRITES_WAITING
                            || waiting_bytes > INDEX_WAITING_BYTES
                            || first.queued.elapsed() >= INDEX_STORE_DELAY;
                        if !due {
                            break;
                        }
                        let job = waiting.pop_front().expect("a first job");
                        waiting_bytes -= bytes(&job);
                        store(job);
                    }
                    // The next job, or the time the first waiting is due.
                    let next = match waiting.front() {
                        None => messages.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Some(first) => messages
                            .recv_timeout(INDEX_STORE_DELAY.saturating_sub(first.queued.elapsed())),
                    };
                    match next {
                        Ok(IndexMessage::Store(job)) => {
                            waiting_bytes += bytes(&job);
                            waiting.push_back(job);
                        }
                        Ok(IndexMessage::Hurry) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => {
                            waiting.into_iter().for_each(store);
                            break;
                        }
                    }
                }
            });
        match started {
            Ok(thread) => {
                *self.thread.lock().expect("index thread lock") = Some(thread);
                Some(sender)
            }
            Err(e) => {
                tracing::warn!("no thread to store indexes in the background: {e}");
                None
            }
        }
    }

    fn done(&self) {
        let (count, idle) = &*self.pending;
        *count.lock().expect("pending lock") -= 1;
        idle.notify_all();
    }

    /// Stores what is queued without waiting for [`INDEX_STORE_DELAY`].
    fn hurry(&self) {
        self.hurry.store(true, Ordering::Relaxed);
        if let Some(sender) = self.queue.lock().expect("index queue lock").as_ref() {
            // A full queue wakes the thread anyway.
            let _ = sender.try_send(IndexMessage::Hurry);
        }
    }

    /// Waits, at most `limit`, until every index queued is stored (at
    /// once: the origin is finishing).
    pub(super) fn wait_idle(&self, limit: Duration) {
        self.hurry();
        let (count, idle) = &*self.pending;
        let guard = count.lock().expect("pending lock");
        let _ = idle.wait_timeout_while(guard, limit, |n| *n > 0);
    }
}

impl Drop for IndexWriter {
    /// Ends the thread once it has stored what is queued: it holds the
    /// cache, whose database connections must close before the process
    /// exits (SQLite then folds its write-ahead log back into the database).
    fn drop(&mut self) {
        self.hurry();
        self.queue.lock().expect("index queue lock").take();
        if let Some(thread) = self.thread.lock().expect("index thread lock").take() {
            let _ = thread.join();
        }
    }
}

fn write_index(cache: &Cache, job: &IndexJob) {
    let spec = ObjectSpec {
        key: job.key.clone(),
        kind: "index",
        ext: "idx",
        sources: std::slice::from_ref(&job.source),
    };
    if matches!(cache.find(&spec.key), Ok(Some(_))) {
        return;
    }
    match cache.store(&spec, |out| {
        index_codec::encode_to(job.rendition.index(), out)
    }) {
        Ok(Ok(_)) => tracing::debug!("{}: index stored", job.source.rel),
        Ok(Err(e)) => tracing::debug!("{}: index not stored: {e}", job.source.rel),
        Err(e) => tracing::debug!("{}: index not stored: {e}", job.source.rel),
    }
}
