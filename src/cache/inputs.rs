//! Sources and the input cache: which backend a URL path's source is in,
//! its identity there, and its bytes, from the local file, from a copy in
//! the input cache, or by ranges from the remote store while that copy is
//! being made in the background.
//!
//! A copy is made in chunks of [`COPY_CHUNK`] bytes, each a range request
//! that must match the identity the copy started with (`If-Match`, the
//! length in `Content-Range`), then checked whole (length, and the MD5 when
//! the ETag is one) before it is renamed into place and recorded as an
//! object of kind `input`. Anything less is never served: an interrupted
//! copy is dropped and started again on a later request.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::remote::{etag_md5, md5_hex, Md5Hasher, Meta, RemoteError, Store};
use super::{db, Cache, CacheError, ObjectSpec, SourceId};

/// Bytes of each range request of a copy: a stalled store fails one chunk
/// within the transfer timeout, never a copy of hours.
const COPY_CHUNK: u64 = 16 << 20;

/// A copy that failed is not tried again for this long.
const COPY_BACKOFF: Duration = Duration::from_secs(30);

/// Progress of a copy is written to the cache database this often, for `stat`.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Reads shorter than this go through [`Blocks`], which reads ahead; longer
/// ones (a batch of a segment's samples) are one range request each.
const DIRECT_READ: usize = 256 << 10;
/// Read-ahead unit of small reads (box headers, sample tables)...
const BLOCK: u64 = 1 << 20;
/// ... and how many such blocks each input keeps until it is copied.
const BLOCKS_KEPT: usize = 4;

/// Bytes an input holds read ahead ([`Input::read_ahead`]), at most (a
/// moov and the first bytes of each keyframe, while the index is read) ...
const READ_AHEAD_BYTES: u64 = 96 << 20;
/// ... with spans closer than this fetched in one request ...
const READ_AHEAD_GAP: u64 = 64 << 10;
/// ... and this many requests at once.
const READ_AHEAD_REQUESTS: usize = 32;

/// A restore is asked for again after this (RestoreObject is idempotent
/// while one runs, but each request costs the store one).
const RESTORE_ASKED_AGAIN: Duration = Duration::from_secs(600);

/// Remote identities remembered, at most.
const IDENTITIES_KEPT: usize = 65_536;

/// Where sources are: `(prefix, backend)`, longest prefix first; the last
/// entry has the empty prefix (the media root).
pub struct Sources {
    entries: Vec<Backend>,
}

pub struct Backend {
    /// URL path prefix, after the server's prefix.
    pub prefix: String,
    pub kind: BackendKind,
    /// Copy objects into the input cache.
    pub copy: bool,
}

pub enum BackendKind {
    Filesystem(PathBuf),
    Remote(Box<Store>),
}

impl Sources {
    /// `entries` in any order; `root` serves every path none of them claims.
    pub fn new(mut entries: Vec<Backend>, root: PathBuf) -> Sources {
        entries.push(Backend {
            prefix: String::new(),
            kind: BackendKind::Filesystem(root),
            copy: false,
        });
        entries.sort_by_key(|b| std::cmp::Reverse(b.prefix.len()));
        Sources { entries }
    }

    /// The backend of `rel` (its number and itself) and the object's name in it.
    fn route<'r>(&self, rel: &'r str) -> (usize, &Backend, &'r str) {
        let (n, backend) = self
            .entries
            .iter()
            .enumerate()
            .find(|(_, b)| rel.starts_with(&b.prefix))
            .expect("the last prefix is empty");
        (n, backend, &rel[backend.prefix.len()..])
    }
}

/// What the input cache was given, for `stat`.
pub struct Settings {
    pub revalidate: Duration,
    pub max_copies: usize,
    pub input_max_bytes: u64,
    pub min_free_bytes: u64,
}

pub struct Inputs {
    cache: Arc<Cache>,
    sources: Sources,
    settings: Settings,
    /// Remote identities by URL path, with when they were asked for.
    known: Mutex<HashMap<String, (Instant, Meta)>>,
    /// Copies running, by input key; and when copies last failed.
    copies: Mutex<HashMap<String, Arc<AtomicU64>>>,
    failed_copies: Mutex<HashMap<String, Instant>>,
    /// Archived objects whose restore was asked for, and when.
    restores: Mutex<HashMap<String, Instant>>,
    /// Per backend, looked at once: the device of its root when that is
    /// a local filesystem ([`super::source::local_device`]).
    local_roots: Vec<OnceLock<Option<u64>>>,
    /// Files last found on their local root's own filesystem, no mount
    /// point between: their identity can be read at once
    /// ([`Inputs::resolve_at_once`]).
    at_once: Mutex<HashSet<String>>,
    /// The subtitle files of local directories, with the directory's
    /// modification time when listed ([`Inputs::sidecars`]).
    listings: Mutex<HashMap<PathBuf, Listing>>,
    /// The subtitle files of remote stores by (store, key prefix), with
    /// when they were listed ([`Inputs::sidecars`]).
    remote_listings: Mutex<HashMap<(usize, String), RemoteListing>>,
}

/// Sidecar files of one source, at most ...
pub const MAX_SIDECARS: usize = 32;
/// ... of the names found that could be (read in directory order).
const MAX_SIDECARS_LISTED: usize = 1024;

/// A directory's subtitle files, and its modification time when listed.
type Listing = (std::time::SystemTime, Arc<Vec<String>>);

/// A store's subtitle files under one key prefix, and when they were listed.
type RemoteListing = (Instant, Arc<Vec<String>>);

/// Directory listings kept, at most.
const LISTINGS_KEPT: usize = 4096;

/// Whether a file could be a sidecar of some source (what a directory's
/// listing keeps).
fn subtitle_like(name: &str) -> bool {
    name.ends_with(".vtt") || name.ends_with(".srt")
}

/// Files remembered as readable at once, at most.
const AT_ONCE_PATHS: usize = 65536;

/// A source's bytes, wherever they are now.
pub struct Input {
    rel: String,
    state: InputState,
}

enum InputState {
    /// The local file itself (its identity is checked on every request).
    File(File),
    /// The complete copy in the input cache (gc may delete it).
    Copy(File),
    /// Not copied (yet): read from where it is, until `copy` is filled in.
    Pending {
        origin: Origin,
        copy: OnceLock<File>,
        blocks: Mutex<Blocks>,
        /// Spans fetched ahead for a hint, by offset.
        ahead: Mutex<Vec<(u64, Vec<u8>)>>,
    },
}

/// Where a pending input's bytes are read from.
enum Origin {
    Local(File),
    Remote {
        sources: Arc<Inputs>,
        backend: usize,
        name: String,
        meta: Meta,
    },
}

impl Inputs {
    pub fn new(cache: Arc<Cache>, sources: Sources, settings: Settings) -> Arc<Inputs> {
        Arc::new(Inputs {
            cache,
            settings,
            known: Mutex::default(),
            copies: Mutex::default(),
            failed_copies: Mutex::default(),
            restores: Mutex::default(),
            local_roots: (0..sources.entries.len())
                .map(|_| OnceLock::new())
                .collect(),
            at_once: Mutex::default(),
            listings: Mutex::default(),
            remote_listings: Mutex::default(),
            sources,
        })
    }

    /// The identity of the source at `rel`, when it can be had without
    /// waiting: a file on a local filesystem (one `stat`, no network
    /// behind it) or a remote object whose identity was asked for within
    /// `revalidate`. `None`: ask [`Inputs::resolve`], on a thread that may
    /// wait. For a server's event loop, which must never block.
    pub fn resolve_at_once(&self, rel: &str) -> Option<SourceId> {
        let (n, backend, name) = self.sources.route(rel);
        match &backend.kind {
            BackendKind::Filesystem(root) => {
                if !self.at_once.lock().expect("at-once lock").contains(rel) {
                    return None;
                }
                self.resolve_file(rel, n, root, name, false).ok()
            }
            BackendKind::Remote(_) => {
                let known = self.known.lock().expect("known lock");
                let (at, meta) = known.get(rel)?;
                (at.elapsed() < self.settings.revalidate).then(|| SourceId::of_remote(rel, n, meta))
            }
        }
    }

    /// The names of the files beside `base` (a URL path after the prefix,
    /// without extension) whose names start with its last component and
    /// then a dot: where its sidecar files are, if any. Local directories
    /// are listed, and S3 buckets (the keys with that prefix); an HTTP
    /// server has no listing, so none there. At most [`MAX_SIDECARS`], in
    /// name order. A directory that cannot be read has none.
    pub fn sidecars(&self, base: &str) -> Vec<String> {
        let (n, backend, name) = self.sources.route(base);
        let (dir, stem) = match name.rsplit_once('/') {
            Some((dir, stem)) => (Some(dir), stem),
            None => (None, name),
        };
        if stem.is_empty() {
            return Vec::new();
        }
        let names = match &backend.kind {
            BackendKind::Filesystem(root) => {
                self.local_listing(dir.map_or_else(|| root.clone(), |d| root.join(d)))
            }
            BackendKind::Remote(store) => self.remote_listing(n, store, dir, stem),
        };
        let mut names: Vec<String> = names
            .iter()
            .filter(|n| {
                n.len() > stem.len() && n.starts_with(stem) && n[stem.len()..].starts_with('.')
            })
            .cloned()
            .collect();
        names.sort_unstable();
        names.truncate(MAX_SIDECARS);
        names
    }

    /// The subtitle files of local directory `dir`, listed again when it
    /// has changed.
    fn local_listing(&self, dir: PathBuf) -> Arc<Vec<String>> {
        let Ok(modified) = std::fs::metadata(&dir).and_then(|m| m.modified()) else {
            return Arc::default();
        };
        let listing = self
            .listings
            .lock()
            .expect("listings lock")
            .get(&dir)
            .cloned();
        match listing {
            Some((at, names)) if at == modified => names,
            _ => {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    return Arc::default();
                };
                let names: Arc<Vec<String>> = Arc::new(
                    entries
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .filter(|n| subtitle_like(n))
                        .take(MAX_SIDECARS_LISTED)
                        .collect(),
                );
                // A file made within the directory's timestamp's tick
                // could be missed by a listing taken now: one so fresh is
                // not kept.
                let settled = modified
                    .elapsed()
                    .is_ok_and(|age| age > Duration::from_secs(2));
                if settled {
                    let mut listings = self.listings.lock().expect("listings lock");
                    if listings.len() >= LISTINGS_KEPT {
                        listings.clear();
                    }
                    listings.insert(dir, (modified, Arc::clone(&names)));
                }
                names
            }
        }
    }

    /// The subtitle files of store `n` named `dir/stem.` and more, as
    /// names within `dir`: asked again after `revalidate`, and the last
    /// answer kept while the store cannot give one (stale-if-error).
    fn remote_listing(
        &self,
        n: usize,
        store: &Store,
        dir: Option<&str>,
        stem: &str,
    ) -> Arc<Vec<String>> {
        let prefix = match dir {
            Some(dir) => format!("{dir}/{stem}."),
            None => format!("{stem}."),
        };
        let key = (n, prefix);
        let known = self
            .remote_listings
            .lock()
            .expect("listings lock")
            .get(&key)
            .cloned();
        if let Some((at, names)) = &known {
            if at.elapsed() < self.settings.revalidate {
                return Arc::clone(names);
            }
        }
        let names = match store.list(&key.1) {
            Ok(keys) => Arc::new(
                keys.into_iter()
                    .filter_map(|k| match dir {
                        Some(dir) => Some(k.strip_prefix(dir)?.strip_prefix('/')?.to_string()),
                        None => Some(k),
                    })
                    .filter(|n| !n.contains('/') && subtitle_like(n))
                    .take(MAX_SIDECARS_LISTED)
                    .collect::<Vec<_>>(),
            ),
            Err(e) => {
                tracing::warn!("{}: sidecars not listed: {e}", key.1);
                return known.map(|(_, names)| names).unwrap_or_default();
            }
        };
        let mut listings = self.remote_listings.lock().expect("listings lock");
        if listings.len() >= LISTINGS_KEPT {
            listings.clear();
        }
        listings.insert(key, (Instant::now(), Arc::clone(&names)));
        names
    }

    /// The identity of `name`, a file under `root` (backend `n`), asked
    /// for as `rel`; with `learn`, a file on a local filesystem is
    /// remembered as one [`Inputs::resolve_at_once`] may look at.
    fn resolve_file(
        &self,
        rel: &str,
        n: usize,
        root: &std::path::Path,
        name: &str,
        learn: bool,
    ) -> Result<SourceId, CacheError> {
        let (mut id, device) = super::source::resolve_local_on(root, name)?;
        id.rel.clear();
        id.rel.push_str(rel);
        id.backend = n;
        if learn {
            let local = *self.local_roots[n].get_or_init(|| super::source::local_device(root));
            if local == Some(device) {
                let mut at_once = self.at_once.lock().expect("at-once lock");
                if at_once.len() >= AT_ONCE_PATHS {
                    at_once.clear();
                }
                if !at_once.contains(rel) {
                    at_once.insert(rel.to_string());
                }
            }
        }
        Ok(id)
    }

    /// The identity of the source at `rel` (a URL path after the prefix).
    /// A remote identity is asked for again after `revalidate`; while the
    /// store cannot answer, the last one known is used (stale-if-error).
    pub fn resolve(&self, rel: &str) -> Result<SourceId, CacheError> {
        let (n, backend, name) = self.sources.route(rel);
        let store = match &backend.kind {
            BackendKind::Filesystem(root) => return self.resolve_file(rel, n, root, name, true),
            BackendKind::Remote(store) => store,
        };
        let known = self.known.lock().expect("known lock").get(rel).cloned();
        let meta = match known {
            Some((at, meta)) if at.elapsed() < self.settings.revalidate => meta,
            _ => match store.head(name) {
                Ok(meta) => {
                    self.remember(rel, &meta);
                    meta
                }
                Err(e @ (RemoteError::Down(_) | RemoteError::TimedOut(_))) => {
                    match known
                        .map(|(_, meta)| meta)
                        .or_else(|| self.last_copied(rel))
                    {
                        Some(meta) => {
                            tracing::warn!("{e}: serving {rel} as last seen");
                            meta
                        }
                        None => return Err(CacheError::Remote(e)),
                    }
                }
                Err(e) => {
                    self.forget(rel);
                    return Err(CacheError::Remote(e));
                }
            },
        };
        Ok(SourceId::of_remote(rel, n, &meta))
    }

    /// The identity of the newest copy of `rel` in the input cache, for a
    /// store that is down when no identity is known (after a restart).
    fn last_copied(&self, rel: &str) -> Option<Meta> {
        let key = self.cache.with_db(|c| db::newest_input(c, rel)).ok()??;
        // `input|rel:size:mtime:etag`, see `input_key`.
        let identity = key
            .strip_prefix("input|")?
            .strip_prefix(rel)?
            .strip_prefix(':')?;
        let mut parts = identity.splitn(3, ':');
        let len = parts.next()?.parse().ok()?;
        let mtime_ns: i64 = parts.next()?.parse().ok()?;
        let etag = parts.next()?.to_string();
        Some(Meta {
            len,
            etag,
            last_modified: mtime_ns / 1_000_000_000,
            archived: false,
            // Only compared when a copy is made, and none is made from this.
            etag_is_md5: false,
        })
    }

    fn remember(&self, rel: &str, meta: &Meta) {
        let mut known = self.known.lock().expect("known lock");
        if known.len() >= IDENTITIES_KEPT {
            known.clear();
        }
        known.insert(rel.to_string(), (Instant::now(), meta.clone()));
    }

    /// Asks for `rel`'s identity again next time (it changed, or is gone).
    fn forget(&self, rel: &str) {
        self.known.lock().expect("known lock").remove(rel);
    }

    /// The bytes of `source`. A source to be copied that is not copied yet
    /// is read where it is while the copy is made in the background.
    pub fn open(self: &Arc<Self>, source: &SourceId) -> Result<Arc<Input>, CacheError> {
        let backend = &self.sources.entries[source.backend];
        let open_local = || {
            File::open(&source.path)
                .map_err(|e| CacheError::io(format!("opening {}", source.path.display()), e))
        };
        let key = input_key(source);
        if backend.copy {
            if let Some(file) = self.cached_copy(&key)? {
                tracing::debug!("{}: read from its copy in the input cache", source.rel);
                return Ok(Arc::new(Input {
                    rel: source.rel.clone(),
                    state: InputState::Copy(file),
                }));
            }
        }
        let origin = match &backend.kind {
            BackendKind::Filesystem(_) if !backend.copy => {
                return Ok(Arc::new(Input {
                    rel: source.rel.clone(),
                    state: InputState::File(open_local()?),
                }));
            }
            BackendKind::Filesystem(_) => Origin::Local(open_local()?),
            BackendKind::Remote(store) => {
                let meta = self
                    .known
                    .lock()
                    .expect("known lock")
                    .get(&source.rel)
                    .map(|(_, m)| m.clone())
                    .filter(|m| SourceId::of_remote(&source.rel, source.backend, m) == *source)
                    .ok_or_else(|| {
                        CacheError::Remote(RemoteError::Changed(format!(
                            "{}: its identity changed while it was opened",
                            source.rel
                        )))
                    })?;
                let name = &source.rel[backend.prefix.len()..];
                if meta.archived {
                    return Err(CacheError::Remote(self.restore(store, name)));
                }
                Origin::Remote {
                    sources: Arc::clone(self),
                    backend: source.backend,
                    name: name.to_string(),
                    meta,
                }
            }
        };
        let input = Arc::new(Input {
            rel: source.rel.clone(),
            state: InputState::Pending {
                origin,
                copy: OnceLock::new(),
                blocks: Mutex::default(),
                ahead: Mutex::default(),
            },
        });
        if backend.copy {
            self.start_copy(source, &key, &input);
        }
        Ok(input)
    }

    /// The complete copy of `key` in the input cache, opened.
    fn cached_copy(&self, key: &str) -> Result<Option<File>, CacheError> {
        let Some(object) = self.cache.find(key)? else {
            return Ok(None);
        };
        let super::Body::File(file) = object.body else {
            return Ok(None);
        };
        Arc::try_unwrap(file)
            .or_else(|shared| shared.try_clone())
            .map(Some)
            .map_err(|e| CacheError::io("reopening a cached input", e))
    }

    /// Asks for a restore of an archived object, unless one was asked for
    /// recently; the error to answer with.
    fn restore(&self, store: &Store, name: &str) -> RemoteError {
        {
            let mut asked = self.restores.lock().expect("restores lock");
            asked.retain(|_, at| at.elapsed() < RESTORE_ASKED_AGAIN);
            if asked.len() >= IDENTITIES_KEPT {
                asked.clear();
            }
            if asked.insert(name.to_string(), Instant::now()).is_some() {
                return RemoteError::Archived(format!(
                    "{name}: in an archive storage class; a restore is under way"
                ));
            }
        }
        match store.restore(name) {
            Ok(()) => RemoteError::Archived(format!(
                "{name}: in an archive storage class; a restore was asked for"
            )),
            Err(e) => e,
        }
    }

    /// Starts copying `source` into the input cache, unless a copy of it
    /// runs already, copies are at their limit, it failed recently, or it
    /// would not fit (then it is read by ranges).
    fn start_copy(self: &Arc<Self>, source: &SourceId, key: &str, input: &Arc<Input>) {
        if let Some(at) = self.failed_copies.lock().expect("failed lock").get(key) {
            if at.elapsed() < COPY_BACKOFF {
                return;
            }
        }
        let done = Arc::new(AtomicU64::new(0));
        {
            let mut copies = self.copies.lock().expect("copies lock");
            if copies.contains_key(key) || copies.len() >= self.settings.max_copies {
                return;
            }
            if let Err(why) = self.room_for(source.size) {
                tracing::info!("{}: not copied, read by ranges: {why}", source.rel);
                return;
            }
            copies.insert(key.to_string(), Arc::clone(&done));
        }
        let inputs = Arc::clone(self);
        let rel = source.rel.clone();
        let (source, key, input) = (source.clone(), key.to_string(), Arc::clone(input));
        let spawned = std::thread::Builder::new()
            .name("copy".into())
            .spawn(move || {
                let started = Instant::now();
                let result = inputs.copy(&source, &key, &input, &done);
                inputs.copies.lock().expect("copies lock").remove(&key);
                let _ = inputs.cache.with_db(|c| db::end_download(c, &key));
                match result {
                    Ok(file) => {
                        tracing::info!(
                            "{}: copied into the input cache ({} bytes in {:.1} s)",
                            source.rel,
                            source.size,
                            started.elapsed().as_secs_f64()
                        );
                        if let InputState::Pending { copy, blocks, .. } = &input.state {
                            let _ = copy.set(file);
                            // Every read is local from now on.
                            blocks.lock().expect("blocks lock").kept.clear();
                        }
                    }
                    Err(e) => {
                        tracing::warn!("{}: copy abandoned, nothing kept: {e}", source.rel);
                        if matches!(e, CacheError::Remote(RemoteError::Changed(_))) {
                            inputs.forget(&source.rel);
                        }
                        inputs
                            .failed_copies
                            .lock()
                            .expect("failed lock")
                            .insert(key, Instant::now());
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("{rel}: copy not started: {e}");
        }
    }

    /// Why a copy of `len` bytes would not fit, if it would not.
    fn room_for(&self, len: u64) -> Result<(), String> {
        let free = self.cache.free_bytes().map_err(|e| e.to_string())?;
        if free < len.saturating_add(self.settings.min_free_bytes) {
            return Err(format!(
                "{len} bytes would leave less than cache.min_free ({} of {free} bytes free)",
                self.settings.min_free_bytes
            ));
        }
        let cap = self.settings.input_max_bytes;
        if cap > 0 {
            let used = self
                .cache
                .with_db(|c| db::input_bytes(c))
                .map_err(|e| e.to_string())?;
            if used.saturating_add(len) > cap {
                return Err(format!(
                    "{len} bytes more than the {used} cached would pass cache.input_max_size ({cap})"
                ));
            }
        }
        Ok(())
    }

    /// Copies `source` into the input cache; the copy, opened.
    fn copy(
        &self,
        source: &SourceId,
        key: &str,
        input: &Input,
        done: &AtomicU64,
    ) -> Result<File, CacheError> {
        let InputState::Pending { origin, .. } = &input.state else {
            unreachable!("only pending inputs are copied")
        };
        let backend = &self.sources.entries[source.backend];
        let now = self.cache.now();
        self.cache.with_db(|c| {
            db::begin_download(c, key, &source.rel, &backend.prefix, source.size, now)
        })?;
        let spec = ObjectSpec {
            key: key.to_string(),
            kind: "input",
            ext: "mp4",
            sources: std::slice::from_ref(source),
        };
        let last_report = std::cell::Cell::new(Instant::now());
        let stored = self.cache.store(&spec, |out| {
            let mut md5 = Md5Hasher::default();
            let mut offset = 0;
            while offset < source.size {
                let len = COPY_CHUNK.min(source.size - offset);
                match origin {
                    Origin::Remote { name, meta, .. } => {
                        let BackendKind::Remote(store) = &backend.kind else {
                            unreachable!("a remote origin has a remote backend")
                        };
                        store.copy_range(name, meta, offset, len, out, &mut md5)?;
                    }
                    Origin::Local(file) => copy_local(file, offset, len, out)?,
                }
                offset += len;
                done.store(offset, Ordering::Relaxed);
                if last_report.get().elapsed() >= PROGRESS_INTERVAL {
                    last_report.set(Instant::now());
                    let _ = self
                        .cache
                        .with_db(|c| db::download_progress(c, key, offset));
                }
            }
            if let Origin::Remote { meta, .. } = origin {
                if let Some(expected) = etag_md5(&meta.etag).filter(|_| meta.etag_is_md5) {
                    let actual = md5_hex(md5);
                    if actual != expected {
                        return Err(RemoteError::Changed(format!(
                            "{}: the copy's MD5 is {actual}, the store's ETag says {expected}",
                            source.rel
                        )));
                    }
                }
            }
            Ok(())
        })?;
        match stored {
            Ok(file) => Ok(file),
            Err(e) => Err(CacheError::Remote(e)),
        }
    }

    /// Bytes and requests fetched from each remote backend since the last
    /// call, by prefix.
    pub fn take_fetched(&self) -> Vec<(String, u64, u64)> {
        self.sources
            .entries
            .iter()
            .filter_map(|b| match &b.kind {
                BackendKind::Remote(store) => {
                    let (bytes, requests) = store.take_fetched();
                    Some((b.prefix.clone(), bytes, requests))
                }
                BackendKind::Filesystem(_) => None,
            })
            .filter(|(_, bytes, requests)| *bytes > 0 || *requests > 0)
            .collect()
    }

    /// Waits for the copies running to end (a command that exits would
    /// otherwise cut them off).
    pub fn wait_for_copies(&self, limit: Duration) {
        let started = Instant::now();
        while !self.copies.lock().expect("copies lock").is_empty() && started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn copy_local(
    file: &File,
    offset: u64,
    len: u64,
    out: &mut dyn std::io::Write,
) -> Result<(), RemoteError> {
    let mut buf = vec![0; 256 << 10];
    let mut at = offset;
    while at < offset + len {
        let n = buf.len().min((offset + len - at) as usize);
        file.read_exact_at(&mut buf[..n], at)
            .map_err(|e| RemoteError::Down(format!("reading the source: {e}")))?;
        out.write_all(&buf[..n])
            .map_err(|e| RemoteError::Refused(format!("writing the copy: {e}")))?;
        at += n as u64;
    }
    Ok(())
}

/// The key of the input-cache object of `source` (read back by
/// [`Inputs::last_copied`]).
fn input_key(source: &SourceId) -> String {
    format!("input|{}", source.key_part())
}

impl Input {
    /// Fills `buf` from `offset`: from the file or copy, else from the
    /// source where it is.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let (origin, copy, blocks, ahead) = match &self.state {
            InputState::File(file) | InputState::Copy(file) => {
                return file.read_exact_at(buf, offset)
            }
            InputState::Pending {
                origin,
                copy,
                blocks,
                ahead,
            } => (origin, copy, blocks, ahead),
        };
        if let Some(file) = copy.get() {
            return file.read_exact_at(buf, offset);
        }
        {
            let ahead = ahead.lock().expect("ahead lock");
            let i = ahead.partition_point(|(start, _)| *start <= offset);
            if let Some((start, data)) = i.checked_sub(1).map(|i| &ahead[i]) {
                let from = (offset - start) as usize;
                if let Some(bytes) = data.get(from..from + buf.len()) {
                    buf.copy_from_slice(bytes);
                    return Ok(());
                }
            }
        }
        match origin {
            Origin::Local(file) => file.read_exact_at(buf, offset),
            Origin::Remote { .. } if buf.len() >= DIRECT_READ => {
                origin.fetch(offset, buf).map_err(std::io::Error::other)
            }
            Origin::Remote { meta, .. } => blocks
                .lock()
                .expect("blocks lock")
                .read(origin, meta.len, offset, buf),
        }
    }

    /// Fetches `spans` (`(offset, len)`) of a remote input that is not
    /// copied yet together, a few requests at a time, for the reads that
    /// follow; up to [`READ_AHEAD_BYTES`] of them.
    pub fn read_ahead(&self, spans: &[(u64, usize)]) {
        let InputState::Pending {
            origin: origin @ Origin::Remote { meta, .. },
            copy,
            ahead,
            ..
        } = &self.state
        else {
            return;
        };
        if copy.get().is_some() {
            return;
        }
        let mut sorted: Vec<(u64, u64)> = spans
            .iter()
            .map(|&(at, len)| (at, at.saturating_add(len as u64).min(meta.len)))
            .filter(|(at, end)| at < end)
            .collect();
        sorted.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (at, end) in sorted {
            match merged.last_mut() {
                Some(last) if at <= last.1.saturating_add(READ_AHEAD_GAP) => {
                    last.1 = last.1.max(end)
                }
                _ => merged.push((at, end)),
            }
        }
        // Only what is not held yet, up to the bound.
        let held = ahead.lock().expect("ahead lock");
        let mut total: u64 = held.iter().map(|(_, d)| d.len() as u64).sum();
        merged.retain(|&(at, end)| {
            let i = held.partition_point(|(start, _)| *start <= at);
            let covered = i
                .checked_sub(1)
                .is_some_and(|i| held[i].0 + held[i].1.len() as u64 >= end);
            total += end - at;
            !covered && total <= READ_AHEAD_BYTES
        });
        drop(held);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let fetched = Mutex::new(Vec::with_capacity(merged.len()));
        std::thread::scope(|scope| {
            for _ in 0..READ_AHEAD_REQUESTS.min(merged.len()) {
                scope.spawn(|| {
                    while let Some(&(at, end)) = merged.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let mut data = vec![0; (end - at) as usize];
                        if let Err(e) = origin.fetch(at, &mut data) {
                            // The reads will ask again, and fail with it.
                            tracing::debug!("{}: read ahead: {e}", self.rel);
                            return;
                        }
                        fetched.lock().expect("fetched lock").push((at, data));
                    }
                });
            }
        });
        let fetched = fetched.into_inner().expect("fetched lock");
        let mut ahead = ahead.lock().expect("ahead lock");
        ahead.extend(fetched);
        ahead.sort_unstable_by_key(|(at, _)| *at);
    }

    /// Drops what was read ahead (the index is read).
    pub fn forget_read_ahead(&self) {
        if let InputState::Pending { blocks, ahead, .. } = &self.state {
            ahead.lock().expect("ahead lock").clear();
            blocks.lock().expect("blocks lock").kept.clear();
        }
    }

    /// Whether a read may cost a round trip to a remote store (the input
    /// is remote and not copied yet).
    pub fn reads_are_remote(&self) -> bool {
        match &self.state {
            InputState::File(_) | InputState::Copy(_) => false,
            InputState::Pending { origin, copy, .. } => {
                matches!(origin, Origin::Remote { .. }) && copy.get().is_none()
            }
        }
    }

    /// Whether the file read from was deleted (an input-cache copy removed
    /// by gc or invalidate): the source must be opened again.
    pub fn is_gone(&self) -> bool {
        let file = match &self.state {
            InputState::File(_) => return false,
            InputState::Copy(file) => file,
            InputState::Pending { copy, .. } => match copy.get() {
                Some(file) => file,
                None => return false,
            },
        };
        file.metadata().is_ok_and(|m| m.nlink() == 0)
    }
}

impl Origin {
    fn fetch(&self, offset: u64, buf: &mut [u8]) -> Result<(), RemoteError> {
        match self {
            Origin::Local(file) => file
                .read_exact_at(buf, offset)
                .map_err(|e| RemoteError::Down(e.to_string())),
            Origin::Remote {
                sources,
                backend,
                name,
                meta,
            } => {
                let BackendKind::Remote(store) = &sources.sources.entries[*backend].kind else {
                    unreachable!("a remote origin has a remote backend")
                };
                store
                    .read_range(name, meta, offset, buf)
                    .map_err(|e| match e {
                        // Archived since it was identified (GET answered
                        // InvalidObjectState): ask for a restore.
                        RemoteError::Archived(_) => sources.restore(store, name),
                        // Replaced: the next request asks for its identity.
                        RemoteError::Changed(_) => {
                            let prefix = &sources.sources.entries[*backend].prefix;
                            sources.forget(&format!("{prefix}{name}"));
                            e
                        }
                        e => e,
                    })
            }
        }
    }
}

/// Aligned blocks read ahead for small reads, least recently used out.
#[derive(Default)]
struct Blocks {
    kept: Vec<(u64, Vec<u8>)>,
}

impl Blocks {
    fn read(
        &mut self,
        origin: &Origin,
        len: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> std::io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= len)
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        let mut at = offset;
        while at < end {
            let start = at - at % BLOCK;
            let i = match self.kept.iter().position(|(s, _)| *s == start) {
                Some(i) => i,
                None => {
                    // The missing blocks from here to the end of the read,
                    // in one request.
                    let mut stop = start + BLOCK;
                    while stop < end && !self.kept.iter().any(|(s, _)| *s == stop) {
                        stop += BLOCK;
                    }
                    let stop = stop.min(len);
                    let mut data = vec![0; (stop - start) as usize];
                    origin
                        .fetch(start, &mut data)
                        .map_err(std::io::Error::other)?;
                    for (k, chunk) in data.chunks(BLOCK as usize).enumerate() {
                        if self.kept.len() >= BLOCKS_KEPT {
                            self.kept.remove(0);
                        }
                        self.kept.push((start + k as u64 * BLOCK, chunk.to_vec()));
                    }
                    self.kept
                        .iter()
                        .position(|(s, _)| *s == start)
                        .expect("just kept")
                }
            };
            let block = self.kept.remove(i);
            let from = (at - block.0) as usize;
            let n = (block.1.len() - from).min((end - at) as usize);
            let into = (at - offset) as usize;
            buf[into..into + n].copy_from_slice(&block.1[from..from + n]);
            at += n as u64;
            self.kept.push(block);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins_and_the_root_takes_the_rest() {
        let fs = |prefix: &str, root: &str| Backend {
            prefix: prefix.into(),
            kind: BackendKind::Filesystem(root.into()),
            copy: false,
        };
        let sources = Sources::new(
            vec![fs("a/", "/short"), fs("a/b/", "/long")],
            "/root".into(),
        );
        let root_of = |rel| match sources.route(rel) {
            (
                _,
                Backend {
                    kind: BackendKind::Filesystem(root),
                    ..
                },
                name,
            ) => (root.display().to_string(), name.to_string()),
            _ => unreachable!(),
        };
        assert_eq!(root_of("a/b/c.mp4"), ("/long".into(), "c.mp4".into()));
        assert_eq!(root_of("a/c.mp4"), ("/short".into(), "c.mp4".into()));
        assert_eq!(root_of("ab/c.mp4"), ("/root".into(), "ab/c.mp4".into()));
    }
}
