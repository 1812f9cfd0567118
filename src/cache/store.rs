//! Steps 1-3 of an object's lifecycle (see the module above): make it into
//! a temporary file, rename it into place, record it. When the cache cannot
//! take it, the object is made into memory instead and still answered.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

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

/// An object made for an answer is stored once the answer has sent it
/// (when the answer starts within the first wait), or after the second,
/// whichever comes first: a slow client holds a worker no longer.
const ANSWER_START_WAIT: Duration = Duration::from_millis(20);
const ANSWER_SEND_WAIT: Duration = Duration::from_millis(50);

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
    /// took it have sent it: with `answered` (an answer takes what is
    /// announced), after that answer, and else after those that started.
    pub(super) fn stream_and_store<T, E>(
        &self,
        spec: &ObjectSpec,
        announce: &dyn Fn(Body, u64),
        answered: bool,
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
        announce(Body::Held(Arc::clone(&held)), len);
        // Written once its answer has gone: on a busy machine the write
        // would take the cores that send it (and the client's). Made
        // ahead, it waits only for the answers that took it while it was
        // made (a player's request for what was being made ahead).
        let start_wait = if answered {
            ANSWER_START_WAIT
        } else {
            Duration::ZERO
        };
        let sent = held.wait_answered(start_wait, ANSWER_SEND_WAIT);
        let waited = started.elapsed() - made_in;
        let stored = self.temp_file(&object_file(spec).0).and_then(|temp| {
            (&temp.file)
                .write_all(held.bytes())
                .map_err(|e| CacheError::io(format!("writing {}", temp.path.display()), e))?;
            self.put_in_place(spec, temp, &object_file(spec).1, len)
        });
        let body = match stored {
            Ok(file) => Body::File(Arc::new(file)),
            Err(e) => {
                self.warn_not_stored(spec, &e);
                Body::Held(held)
            }
        };
        tracing::debug!(
            "{} of {len} bytes made in {:.2} ms, {} in {:.2} ms, then stored in {:.2} ms more",
            spec.kind,
            made_in.as_secs_f64() * 1e3,
            match (answered, sent) {
                (_, true) => "answered",
                (false, false) => "not asked for",
                (true, false) => "not all answered",
            },
            waited.as_secs_f64() * 1e3,
            (started.elapsed() - made_in - waited).as_secs_f64() * 1e3
        );
        Ok((body, len, made))
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
    use std::sync::Mutex;

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
        let cache = Cache::open(dir.path(), Arc::new(FixedClock(1000))).unwrap();
        let whole: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let early: Mutex<Option<Object>> = Mutex::new(None);
        let ready = |object: Object| {
            assert_eq!(object.state, State::Miss);
            assert!(matches!(object.body, Body::Held(_)));
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

    /// The answer `ready` starts on another thread: it holds the bytes
    /// (as a response body does while it goes out) until told to let go,
    /// and tells whether the object was stored by then.
    fn answer_held_until(
        release: std::sync::mpsc::Receiver<()>,
        stored_meanwhile: std::sync::mpsc::Sender<bool>,
        cache: Arc<Cache>,
    ) -> impl Fn(Object) {
        let release = Mutex::new(Some(release));
        move |object: Object| {
            let Body::Held(held) = &object.body else {
                panic!("answered from memory")
            };
            let answering = held.answer();
            let release = release.lock().unwrap().take().unwrap();
            let (cache, stored_meanwhile) = (Arc::clone(&cache), stored_meanwhile.clone());
            std::thread::spawn(move || {
                let _ = release.recv_timeout(Duration::from_secs(5));
                let _ = stored_meanwhile.send(cache.find("k").unwrap().is_some());
                drop(answering);
            });
        }
    }

    #[test]
    fn an_object_is_stored_once_its_answer_has_sent_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::open(dir.path(), Arc::new(FixedClock(1000))).unwrap());
        let (release, released) = std::sync::mpsc::channel();
        let (stored_tx, stored_meanwhile) = std::sync::mpsc::channel();
        let ready = answer_held_until(released, stored_tx, Arc::clone(&cache));
        let maker = std::thread::spawn({
            let cache = Arc::clone(&cache);
            move || {
                cache
                    .get_or_stream(&spec("k"), Some(&ready), |out, announce| {
                        announce(3);
                        out.write_all(b"abc")
                    })
                    .map(|_| ())
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        release.send(()).unwrap();
        assert!(!stored_meanwhile.recv().unwrap(), "stored while answered");
        maker.join().unwrap().unwrap();
        assert!(cache.find("k").unwrap().is_some());
    }

    #[test]
    fn made_ahead_it_waits_only_for_the_answers_that_took_it() {
        let held = Arc::new(Held::new(b"abc".to_vec(), Arc::default()));
        let started = Instant::now();
        assert!(!held.wait_answered(Duration::ZERO, ANSWER_SEND_WAIT));
        assert!(started.elapsed() < ANSWER_SEND_WAIT, "nothing to wait for");
        let answering = held.answer();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            drop(answering);
        });
        let started = Instant::now();
        assert!(held.wait_answered(Duration::ZERO, Duration::from_secs(5)));
        assert!(started.elapsed() >= Duration::from_millis(10));
        sender.join().unwrap();
    }

    #[test]
    fn a_slow_answer_holds_the_store_back_no_longer_than_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::open(dir.path(), Arc::new(FixedClock(1000))).unwrap());
        let (release, released) = std::sync::mpsc::channel();
        let (stored_tx, stored_meanwhile) = std::sync::mpsc::channel();
        let ready = answer_held_until(released, stored_tx, Arc::clone(&cache));
        let started = Instant::now();
        cache
            .get_or_stream(&spec("k"), Some(&ready), |out, announce| {
                announce(3);
                out.write_all(b"abc")
            })
            .unwrap();
        let waited = started.elapsed();
        release.send(()).unwrap();
        assert!(
            stored_meanwhile.recv().unwrap(),
            "stored before the answer was sent"
        );
        assert!(waited >= ANSWER_SEND_WAIT, "waited {waited:?}");
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
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
