//! Steps 1-3 of an object's lifecycle (see the module above): make it into
//! a temporary file, rename it into place, record it. When the cache cannot
//! take it, the object is made into memory instead and still answered.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::held::Waited;
use super::{db, hex, Body, Cache, CacheError, Failure, Held, ObjectSpec};

/// Bytes gathered before each write to the temporary file: large writes,
/// and a bounded amount of memory per object being made.
const WRITE_BUFFER_BYTES: usize = 256 << 10;

/// An object made into memory to be answered before it is stored is at
/// most this long (6 s of 20 Mbit/s), ...
const MAX_HELD_OBJECT_BYTES: u64 = 16 << 20;
/// ... and such objects hold at most this much between them, until their
/// answers are sent: a client that reads slowly holds its object.
const MAX_HELD_BYTES: u64 = 256 << 20;

/// A failure to store is logged at most this often.
const STORE_WARNING_INTERVAL: Duration = Duration::from_secs(60);

impl Cache {
    /// Makes the object of `spec` and stores it; returns its body, length
    /// and what `make` returned.
    pub(super) fn make_and_store<T, E>(
        &self,
        spec: &ObjectSpec,
        make: &impl Fn(&mut dyn Write) -> Result<T, E>,
    ) -> Result<(Body, u64, T), Failure<E>> {
        let started = Instant::now();
        let stored = match self.make_into_file(spec, make) {
            Ok(Ok((file, len, made))) => Some((Body::File(Arc::new(file)), len, made)),
            Ok(Err(e)) => return Err(Failure::Make(e)),
            Err(e) => {
                self.warn_not_stored(spec, &e);
                None
            }
        };
        let (body, len, made) = match stored {
            Some(stored) => stored,
            // The cache could not take it: make it again, into memory.
            None => {
                let mut bytes = Vec::new();
                let made = make(&mut bytes).map_err(Failure::Make)?;
                let len = bytes.len() as u64;
                (Body::Bytes(Arc::new(bytes)), len, made)
            }
        };
        tracing::debug!(
            "{} of {len} bytes made and stored in {:.2} ms",
            spec.kind,
            started.elapsed().as_secs_f64() * 1e3
        );
        Ok((body, len, made))
    }

    /// Makes the object of `spec`: into memory when `make` announces a
    /// length within [`MAX_HELD_OBJECT_BYTES`] and the budget
    /// ([`MAX_HELD_BYTES`]) has room, then hands it to `announce` before it
    /// is written to its file and stored; else into its file, as
    /// [`Cache::make_and_store`] does. A failure of `make` is always met
    /// before anything is announced. It is stored once the answers that
    /// took it are done with it ([`Cache::store_held`]).
    pub(super) fn stream_and_store<T, E>(
        &self,
        spec: &ObjectSpec,
        announce: &dyn Fn(&Arc<Held>, u64),
        make: &impl Fn(&mut dyn Write, &dyn Fn(u64)) -> Result<T, E>,
    ) -> Result<(Body, u64, T), Failure<E>> {
        let started = Instant::now();
        // What `make` announced, and the room it was given in memory
        // (given back however this ends, a panic of `make` included).
        let reserved = std::cell::Cell::new(None::<u64>);
        let reservation = Reservation {
            budget: &self.held,
            len: std::cell::Cell::new(0),
        };
        let reserve = |len: u64| {
            if reserved.get().is_none() && len <= MAX_HELD_OBJECT_BYTES && reservation.take(len) {
                reserved.set(Some(len));
            }
        };
        let mut bytes = Vec::new();
        let mut sink = InMemory::new(&mut bytes, &reserved);
        let made = make(&mut sink, &reserve);
        let refused = sink.refused;
        let Some(len) = reserved.get() else {
            return match made {
                // Not announced, or no room: the object goes straight to
                // its file, made again (`make` could write nothing).
                Err(_) if refused => self.make_and_store(spec, &|out| make(out, &|_| {})),
                Err(e) => Err(Failure::Make(e)),
                // Nothing written, nothing announced: an empty object.
                Ok(_) => self.make_and_store(spec, &|out| make(out, &|_| {})),
            };
        };
        let made = match made {
            Ok(made) if bytes.len() as u64 == len => made,
            Err(e) => return Err(Failure::Make(e)),
            // The announced length was wrong: made again straight into
            // the file, and checked there.
            Ok(_) => {
                drop(reservation);
                return self.make_and_store(spec, &|out| make(out, &|_| {}));
            }
        };
        // From here the budget counts what the vector holds, until the
        // last answer drops it (`Held`); the reservation goes back below.
        self.held
            .fetch_add(bytes.capacity() as u64, Ordering::Relaxed);
        drop(reservation);
        let held = Arc::new(Held::new(bytes, Arc::clone(&self.held)));
        let made_in = started.elapsed();
        announce(&held, len);
        let body = self.store_held(spec, held, len, made_in);
        Ok((body, len, made))
    }

    /// Stores `held`, of `len` bytes made in `made_in`, once the answers
    /// that took it are done with it (at most [`Cache::answer_wait`]): on
    /// a busy machine the write would take the cores that send it, and
    /// the client's. Its body from then on: its file, or the bytes still
    /// when they could not be stored.
    fn store_held(&self, spec: &ObjectSpec, held: Arc<Held>, len: u64, made_in: Duration) -> Body {
        let waited = Instant::now();
        let answers = held.wait_answered(self.answer_wait);
        let waited = waited.elapsed();
        let storing = Instant::now();
        let stored = self.temp_file(&object_file(spec).0).and_then(|temp| {
            (&temp.file)
                .write_all(held.bytes())
                .map_err(|e| CacheError::io(format!("writing {}", temp.path.display()), e))?;
            self.put_in_place(spec, temp, &object_file(spec).1, len)
        });
        tracing::debug!(
            "{} of {len} bytes made in {:.2} ms, {} {:.2} ms, then stored in {:.2} ms more",
            spec.kind,
            made_in.as_secs_f64() * 1e3,
            match answers {
                Waited::NoAnswer => "no answer waited for it:",
                Waited::Answered => "answered in",
                Waited::TimedOut => "not all answered in",
            },
            waited.as_secs_f64() * 1e3,
            storing.elapsed().as_secs_f64() * 1e3
        );
        match stored {
            Ok(file) => Body::File(Arc::new(file)),
            Err(e) => {
                self.warn_not_stored(spec, &e);
                Body::Held(held)
            }
        }
    }

    /// Makes the object of `spec` into the cache, or nothing: no second
    /// attempt into memory (an input copy is not worth holding there).
    /// `Err`: the cache failed; `Ok(Err)`: `make` did.
    pub fn store<E>(
        &self,
        spec: &ObjectSpec,
        make: impl Fn(&mut dyn Write) -> Result<(), E>,
    ) -> Result<Result<File, E>, CacheError> {
        Ok(self.make_into_file(spec, &make)?.map(|(file, _, ())| file))
    }

    /// `Err`: the cache failed (and nothing is left of the attempt);
    /// `Ok(Err)`: `make` failed on its own.
    fn make_into_file<T, E>(
        &self,
        spec: &ObjectSpec,
        make: &impl Fn(&mut dyn Write) -> Result<T, E>,
    ) -> Result<Result<(File, u64, T), E>, CacheError> {
        let (hash, rel) = object_file(spec);
        let temp = self.temp_file(&hash)?;
        let mut writer = Recording::new(BufWriter::with_capacity(WRITE_BUFFER_BYTES, &temp.file));
        let made = match make(&mut writer) {
            Ok(made) => made,
            // A write that failed is the cache's failure, whatever `make`
            // made of it.
            Err(e) => return writer.into_error(&temp).map(|()| Err(e)),
        };
        let len = writer.written;
        writer.finish(&temp)?;
        let file = self.put_in_place(spec, temp, &rel, len)?;
        Ok(Ok((file, len, made)))
    }

    /// Whether the cache can be used: its database answers, and a byte
    /// can be written to a file in its `tmp/` (not on a full disk or a
    /// read-only one). For a readiness probe: a few syscalls and a read.
    pub fn check_health(&self) -> Result<(), CacheError> {
        self.with_db(|conn| {
            conn.query_row(
                "SELECT count(*) FROM (SELECT 1 FROM object LIMIT 1)",
                [],
                |_| Ok(()),
            )
        })?;
        let mut probe = self.temp_file("health")?;
        probe
            .file
            .write_all(b"\n")
            .map_err(|e| CacheError::io(format!("writing {}", probe.path.display()), e))?;
        Ok(())
    }

    fn temp_file(&self, hash: &str) -> Result<TempFile, CacheError> {
        TempFile::create(self.dir.join("tmp").join(format!(
            "{hash}.{}.{}",
            std::process::id(),
            self.temp_counter.fetch_add(1, Ordering::Relaxed)
        )))
    }

    /// Steps 2 and 3 for a whole temporary file of `len` bytes: fsync if
    /// asked, rename to `rel`, record. The file comes back open; a failed
    /// record leaves an orphan for reconcile, and the object still whole.
    fn put_in_place(
        &self,
        spec: &ObjectSpec,
        temp: TempFile,
        rel: &str,
        len: u64,
    ) -> Result<File, CacheError> {
        let final_path = self.dir.join(rel);
        if self.fsync {
            temp.file
                .sync_data()
                .map_err(|e| CacheError::io(format!("fsync {}", temp.path.display()), e))?;
        }
        let dir = final_path.parent().expect("objects/<hh>");
        std::fs::create_dir_all(dir)
            .map_err(|e| CacheError::io(format!("creating {}", dir.display()), e))?;
        let file = temp.rename(&final_path)?;
        let sources: Vec<(String, u64, i64)> = spec
            .sources
            .iter()
            .map(|s| (s.rel.clone(), s.size, s.mtime_ns))
            .collect();
        let row = db::NewObject {
            key: &spec.key,
            file: rel,
            kind: spec.kind,
            bytes: len,
            sources: &sources,
        };
        let now = self.clock.now();
        // The file is in place and open: a failed insert leaves an orphan
        // for reconcile, and this answer is still whole.
        if let Err(e) = self.with_db(|c| db::insert(c, &row, now)) {
            self.warn_not_stored(spec, &e);
        }
        Ok(file)
    }

    fn warn_not_stored(&self, spec: &ObjectSpec, e: &CacheError) {
        let mut last = self.store_warned.lock().expect("store warning lock");
        if last.is_none_or(|t| t.elapsed() >= STORE_WARNING_INTERVAL) {
            *last = Some(Instant::now());
            tracing::error!(
                "not cached, still answered (logged once a minute): {} {}: {e}",
                spec.kind,
                spec.key
            );
        }
    }
}

/// Room taken in the budget of held objects, given back when dropped.
struct Reservation<'a> {
    budget: &'a std::sync::atomic::AtomicU64,
    len: std::cell::Cell<u64>,
}

impl Reservation<'_> {
    /// Takes room for `len` bytes, if the budget has it.
    fn take(&self, len: u64) -> bool {
        let before = self.budget.fetch_add(len, Ordering::Relaxed);
        if before + len > MAX_HELD_BYTES {
            self.budget.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        self.len.set(self.len.get() + len);
        true
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.len.get(), Ordering::Relaxed);
    }
}

/// Where [`Cache::stream_and_store`]'s maker writes: memory, once room
/// was reserved for the length it announced; a write before that, or past
/// that length, is refused.
struct InMemory<'a> {
    bytes: &'a mut Vec<u8>,
    reserved: &'a std::cell::Cell<Option<u64>>,
    /// A write was refused for want of room (not past the length).
    refused: bool,
}

impl<'a> InMemory<'a> {
    fn new(bytes: &'a mut Vec<u8>, reserved: &'a std::cell::Cell<Option<u64>>) -> Self {
        InMemory {
            bytes,
            reserved,
            refused: false,
        }
    }
}

impl Write for InMemory<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.reserved.get() {
            Some(len) if self.bytes.len() + buf.len() <= len as usize => {
                if self.bytes.capacity() == 0 {
                    self.bytes.reserve_exact(len as usize);
                }
                self.bytes.extend_from_slice(buf);
                Ok(buf.len())
            }
            Some(_) => Err(std::io::Error::other("more bytes than announced")),
            None => {
                self.refused = true;
                Err(std::io::Error::other("no room in memory for the object"))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The hash of `spec`'s key, and the object file's path in the cache.
fn object_file(spec: &ObjectSpec) -> (String, String) {
    let hash = hex(&Sha256::digest(spec.key.as_bytes()));
    let rel = format!("objects/{}/{hash}.{}", &hash[..2], spec.ext);
    (hash, rel)
}

/// A temporary file, removed unless renamed into place.
struct TempFile {
    path: std::path::PathBuf,
    file: File,
    renamed: bool,
}

impl TempFile {
    fn create(path: std::path::PathBuf) -> Result<TempFile, CacheError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| CacheError::io(format!("creating {}", path.display()), e))?;
        Ok(TempFile {
            path,
            file,
            renamed: false,
        })
    }

    fn rename(mut self, to: &std::path::Path) -> Result<File, CacheError> {
        std::fs::rename(&self.path, to)
            .map_err(|e| CacheError::io(format!("storing {}", to.display()), e))?;
        self.renamed = true;
        self.file
            .try_clone()
            .map_err(|e| CacheError::io(format!("reopening {}", to.display()), e))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A writer that counts what it was given and remembers the first error,
/// so that a failed write is told apart from a failure of the maker.
struct Recording<W: Write> {
    inner: W,
    written: u64,
    error: Option<std::io::Error>,
}

impl<W: Write> Recording<W> {
    fn new(inner: W) -> Self {
        Recording {
            inner,
            written: 0,
            error: None,
        }
    }

    fn finish(mut self, temp: &TempFile) -> Result<(), CacheError> {
        if let Err(e) = self.inner.flush() {
            self.error.get_or_insert(e);
        }
        self.into_error(temp)
    }

    /// `Err` when a write failed.
    fn into_error(self, temp: &TempFile) -> Result<(), CacheError> {
        match self.error {
            Some(e) => Err(CacheError::io(
                format!("writing {}", temp.path.display()),
                e,
            )),
            None => Ok(()),
        }
    }
}

impl<W: Write> Recording<W> {
    /// Keeps the first error, and hands the caller one of the same kind.
    fn remember(&mut self, e: std::io::Error) -> std::io::Error {
        let copy = std::io::Error::new(e.kind(), e.to_string());
        self.error.get_or_insert(e);
        copy
    }
}

impl<W: Write> Write for Recording<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            Err(e) => Err(self.remember(e)),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().map_err(|e| self.remember(e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{mpsc, Mutex};

    use super::*;
    use crate::cache::clock::FixedClock;
    use crate::cache::{Object, State};

    fn spec(key: &str) -> ObjectSpec<'static> {
        ObjectSpec {
            key: key.to_string(),
            kind: "segment",
            ext: "ts",
            sources: &[],
        }
    }

    fn read_all(object: &Object) -> Vec<u8> {
        let mut out = vec![0; object.len as usize];
        let n = object.body.read_at(&mut out, 0).unwrap();
        assert_eq!(n as u64, object.len);
        out
    }

    #[test]
    fn an_object_is_answered_from_memory_before_it_is_stored_the_same() {
        let dir = tempfile::tempdir().unwrap();
        // The answer kept below is not sent: the store waits for it a
        // little only.
        let cache = Cache::open(dir.path(), Arc::new(FixedClock(1000)))
            .unwrap()
            .with_answer_wait(Duration::from_millis(1));
        let whole: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let early: Mutex<Option<Object>> = Mutex::new(None);
        let ready = |object: Object| {
            assert_eq!(object.state, State::Miss);
            assert!(matches!(object.body, Body::Answered(_)));
            // Not stored yet.
            assert!(cache.find("k").unwrap().is_none());
            *early.lock().unwrap() = Some(object);
        };
        let (object, made) = cache
            .get_or_stream(&spec("k"), Some(&ready), |out, announce| {
                announce(whole.len() as u64);
                out.write_all(&whole)?;
                Ok::<_, std::io::Error>(7)
            })
            .unwrap();
        assert_eq!(made, Some(7));
        assert!(matches!(object.body, Body::File(_)));
        let early = early.lock().unwrap().take().expect("ready was called");
        assert!(read_all(&early) == whole, "answered whole");
        assert!(
            cache.held.load(Ordering::Relaxed) > 0,
            "held while answered"
        );
        drop(early);
        assert_eq!(cache.held.load(Ordering::Relaxed), 0, "given back");
        let hit = cache.find("k").unwrap().expect("stored");
        assert!(read_all(&hit) == whole, "stored the same");
    }

    /// A cache whose objects wait at most `answer_wait` for their
    /// answers, and an answer (`ready`) that holds the bytes on another
    /// thread, as a response body does while it goes out, until told to
    /// let go (`release`); it then tells whether the object was stored by
    /// then (`stored_meanwhile`).
    struct HeldAnswer<R> {
        _dir: tempfile::TempDir,
        cache: Arc<Cache>,
        ready: R,
        release: mpsc::Sender<()>,
        stored_meanwhile: mpsc::Receiver<bool>,
    }

    fn held_answer(answer_wait: Duration) -> HeldAnswer<impl Fn(Object) + Send + 'static> {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), Arc::new(FixedClock(1000))).unwrap();
        let cache = Arc::new(cache.with_answer_wait(answer_wait));
        let (release, released) = mpsc::channel::<()>();
        let (stored_tx, stored_meanwhile) = mpsc::channel();
        let released = Mutex::new(Some(released));
        let answers = Arc::clone(&cache);
        let ready = move |object: Object| {
            assert!(
                matches!(object.body, Body::Answered(_)),
                "{:?}",
                object.state
            );
            let released = released.lock().unwrap().take().unwrap();
            let (cache, stored_tx) = (Arc::clone(&answers), stored_tx.clone());
            std::thread::spawn(move || {
                let _ = released.recv_timeout(Duration::from_secs(60));
                let _ = stored_tx.send(cache.find("k").unwrap().is_some());
                drop(object);
            });
        };
        HeldAnswer {
            _dir: dir,
            cache,
            ready,
            release,
            stored_meanwhile,
        }
    }

    fn make_abc(out: &mut dyn Write, announce: &dyn Fn(u64)) -> std::io::Result<()> {
        announce(3);
        out.write_all(b"abc")
    }

    #[test]
    fn an_object_is_stored_once_its_answer_has_sent_it() {
        let held = held_answer(Duration::from_secs(60));
        let maker = std::thread::spawn({
            let (cache, ready) = (Arc::clone(&held.cache), held.ready);
            move || {
                cache
                    .get_or_stream(&spec("k"), Some(&ready), make_abc)
                    .map(|_| ())
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        held.release.send(()).unwrap();
        assert!(
            !held.stored_meanwhile.recv().unwrap(),
            "stored while answered"
        );
        maker.join().unwrap().unwrap();
        assert!(held.cache.find("k").unwrap().is_some());
    }

    #[test]
    fn a_slow_answer_holds_the_store_back_no_longer_than_the_wait() {
        let held = held_answer(Duration::from_millis(20));
        held.cache
            .get_or_stream(&spec("k"), Some(&held.ready), make_abc)
            .unwrap();
        held.release.send(()).unwrap();
        assert!(
            held.stored_meanwhile.recv().unwrap(),
            "stored only after the answer"
        );
    }

    #[test]
    fn with_no_answer_waiting_an_object_is_stored_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), Arc::new(FixedClock(1000))).unwrap();
        let cache = Arc::new(cache.with_answer_wait(Duration::from_secs(60)));
        let (done, made) = mpsc::channel();
        std::thread::spawn({
            let cache = Arc::clone(&cache);
            move || {
                let made = cache.get_or_stream(&spec("k"), None, make_abc);
                let _ = done.send(made.map(|(object, _)| object.len).ok());
            }
        });
        let made = made.recv_timeout(Duration::from_secs(30));
        assert_eq!(made, Ok(Some(3)), "made ahead, not waiting for an answer");
        assert!(cache.find("k").unwrap().is_some());
    }

    #[test]
    fn the_store_waits_for_every_answer_that_took_the_bytes() {
        let held = Arc::new(Held::new(b"abc".to_vec(), Arc::default()));
        assert_eq!(
            held.wait_answered(Duration::from_secs(60)),
            Waited::NoAnswer
        );
        let (first, second) = (held.answer(), held.answer());
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        drop(first);
        let sender = std::thread::spawn({
            let dropped = Arc::clone(&dropped);
            move || {
                std::thread::sleep(Duration::from_millis(10));
                dropped.store(true, Ordering::SeqCst);
                drop(second);
            }
        });
        assert_eq!(
            held.wait_answered(Duration::from_secs(60)),
            Waited::Answered
        );
        assert!(dropped.load(Ordering::SeqCst), "waited for the second");
        sender.join().unwrap();
    }

    #[test]
    fn a_failed_maker_announces_nothing_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), Arc::new(FixedClock(1000))).unwrap();
        let ready = |_: Object| panic!("nothing to answer");
        let result = cache.get_or_stream(&spec("k"), Some(&ready), |out, announce| {
            announce(10);
            out.write_all(b"12345")?;
            Err::<(), _>(std::io::Error::other("the source went away"))
        });
        assert!(matches!(result, Err(Failure::Make(_))));
        assert!(cache.find("k").unwrap().is_none());
        assert_eq!(cache.held.load(Ordering::Relaxed), 0);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_maker_that_panics_gives_its_room_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), Arc::new(FixedClock(1000))).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let ready = |_: Object| {};
            let _ = cache.get_or_stream(&spec("k"), Some(&ready), |out, announce| {
                announce(1000);
                out.write_all(b"12345")?;
                panic!("a bug while making it");
                #[allow(unreachable_code)]
                Ok::<(), std::io::Error>(())
            });
        }));
        assert!(panicked.is_err());
        assert_eq!(cache.held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn beyond_the_budget_an_object_goes_straight_to_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), Arc::new(FixedClock(1000))).unwrap();
        cache.held.store(MAX_HELD_BYTES, Ordering::Relaxed);
        let ready = |_: Object| panic!("no room to answer from memory");
        let (object, _) = cache
            .get_or_stream(&spec("k"), Some(&ready), |out, announce| {
                announce(3);
                out.write_all(b"abc")
            })
            .unwrap();
        assert!(matches!(object.body, Body::File(_)));
        assert_eq!(read_all(&object), b"abc");
        assert_eq!(cache.held.load(Ordering::Relaxed), MAX_HELD_BYTES);
    }
}
