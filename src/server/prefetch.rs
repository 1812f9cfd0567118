//! Segments made ahead of players (`server.prefetch`): after segment K,
//! the next ones; after a media playlist, its first ones
//! ([`Origin::ahead`]). One thread at a lower priority makes them into the
//! cache through the origin, as a request would (a player asking for one
//! while it is being made waits for it rather than making it again); it
//! takes a worker slot only when one is free, so foreground requests never
//! wait for a slot because of it, and what it cannot take up at once is
//! dropped. Its priority is a nice value, not Linux's idle class: a player
//! may wait for a segment it is making (and it takes the cache's locks),
//! and in the idle class a busy machine would leave it, and them, waiting
//! for seconds.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::cache::State;
use crate::origin::Origin;

/// Paths waiting, at most; more are dropped (players ask for them anyway).
const QUEUED: usize = 64;

pub struct Prefetcher {
    queue: Mutex<Option<SyncSender<String>>>,
    /// Paths queued or being made, so that each is made once.
    waiting: Arc<Mutex<HashSet<String>>>,
    stopping: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Prefetcher {
    /// The prefetcher of `origin`, taking slots of `work`; none when
    /// `server.prefetch` is 0 or no thread can be started.
    pub fn start(origin: Arc<Origin>, work: Arc<Semaphore>) -> Option<Prefetcher> {
        if origin.config().server.prefetch == 0 {
            return None;
        }
        let (queue, paths) = mpsc::sync_channel::<String>(QUEUED);
        let waiting: Arc<Mutex<HashSet<String>>> = Arc::default();
        let stopping: Arc<AtomicBool> = Arc::default();
        let (done, stop) = (Arc::clone(&waiting), Arc::clone(&stopping));
        let thread = std::thread::Builder::new()
            .name("prefetch".into())
            .spawn(move || {
                crate::cache::housekeeping::lower_priority();
                for path in paths {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    make(&origin, &work, &path);
                    done.lock().expect("prefetch lock").remove(&path);
                }
            });
        match thread {
            Ok(thread) => Some(Prefetcher {
                queue: Mutex::new(Some(queue)),
                waiting,
                stopping,
                thread: Mutex::new(Some(thread)),
            }),
            Err(e) => {
                tracing::warn!("no thread to make segments ahead of players: {e}");
                None
            }
        }
    }

    /// Queues `paths` to be made, those not queued already, while there
    /// is room.
    pub fn ask(&self, paths: Vec<String>) {
        let queue = self.queue.lock().expect("prefetch lock");
        let Some(queue) = queue.as_ref() else { return };
        let mut waiting = self.waiting.lock().expect("prefetch lock");
        for path in paths {
            if waiting.contains(&path) {
                continue;
            }
            match queue.try_send(path.clone()) {
                Ok(()) => {
                    waiting.insert(path);
                }
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => return,
            }
        }
    }

    /// Finishes what is being made, drops the rest, and ends the thread
    /// (it holds the origin, whose cache must close before the process
    /// exits).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.queue.lock().expect("prefetch lock").take();
        if let Some(thread) = self.thread.lock().expect("prefetch lock").take() {
            let _ = thread.join();
        }
    }
}

/// Makes `path` into the cache when a worker slot is free; a failure is
/// the player's to meet, when it asks.
fn make(origin: &Origin, work: &Arc<Semaphore>, path: &str) {
    let Ok(_slot) = Arc::clone(work).try_acquire_owned() else {
        tracing::debug!("{path}: not made ahead, every worker is busy");
        return;
    };
    match origin.answer(path) {
        Ok(answer) if answer.object.state == State::Hit => {
            tracing::debug!("{path}: in the cache already")
        }
        Ok(_) => tracing::debug!("{path}: made ahead"),
        Err(e) => tracing::debug!("{path}: not made ahead: {e}"),
    }
}
