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

/// Paths remembered as made, at most; then forgotten all at once.
const REMEMBERED: usize = 16_384;

pub struct Prefetcher {
    queue: Mutex<Option<SyncSender<String>>>,
    paths: Arc<Mutex<Paths>>,
    stopping: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What need not be asked for again.
#[derive(Default)]
struct Paths {
    /// Queued or being made: each is made once.
    waiting: HashSet<String>,
    /// Made lately, here or for a player: no lookup for them at every
    /// answer of a popular video. One removed since (gc, invalidate) is
    /// made when a player asks for it.
    made: HashSet<String>,
}

impl Paths {
    fn made(&mut self, path: String) {
        if self.made.len() >= REMEMBERED {
            self.made.clear();
        }
        self.made.insert(path);
    }
}

impl Prefetcher {
    /// The prefetcher of `origin`, taking slots of `work`; none when
    /// `server.prefetch` is 0 or no thread can be started.
    pub fn start(origin: Arc<Origin>, work: Arc<Semaphore>) -> Option<Prefetcher> {
        if origin.config().server.prefetch == 0 {
            return None;
        }
        let (queue, queued) = mpsc::sync_channel::<String>(QUEUED);
        let paths: Arc<Mutex<Paths>> = Arc::default();
        let stopping: Arc<AtomicBool> = Arc::default();
        let (done, stop) = (Arc::clone(&paths), Arc::clone(&stopping));
        let thread = std::thread::Builder::new()
            .name("prefetch".into())
            .spawn(move || {
                crate::cache::housekeeping::lower_priority();
                for path in queued {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let made = make(&origin, &work, &path);
                    let mut done = done.lock().expect("prefetch lock");
                    done.waiting.remove(&path);
                    if made {
                        done.made(path);
                    }
                }
            });
        match thread {
            Ok(thread) => Some(Prefetcher {
                queue: Mutex::new(Some(queue)),
                paths,
                stopping,
                thread: Mutex::new(Some(thread)),
            }),
            Err(e) => {
                tracing::warn!("no thread to make segments ahead of players: {e}");
                None
            }
        }
    }

    /// `answered` was answered to a player (it is in the cache now); then
    /// `ahead` are queued to be made, those neither made lately nor queued
    /// already, while there is room.
    pub fn ask(&self, answered: &str, ahead: Vec<String>) {
        let queue = self.queue.lock().expect("prefetch lock");
        let Some(queue) = queue.as_ref() else { return };
        let mut paths = self.paths.lock().expect("prefetch lock");
        if !paths.made.contains(answered) {
            paths.made(answered.to_string());
        }
        for path in ahead {
            if paths.waiting.contains(&path) || paths.made.contains(&path) {
                continue;
            }
            match queue.try_send(path.clone()) {
                Ok(()) => {
                    paths.waiting.insert(path);
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

/// Makes `path` into the cache when a worker slot is free; whether it is
/// there now. A failure is the player's to meet, when it asks.
fn make(origin: &Origin, work: &Arc<Semaphore>, path: &str) -> bool {
    let Ok(_slot) = Arc::clone(work).try_acquire_owned() else {
        tracing::debug!("{path}: not made ahead, every worker is busy");
        return false;
    };
    match origin.answer(path) {
        Ok(answer) if answer.object.state == State::Hit => {
            tracing::debug!("{path}: in the cache already");
            true
        }
        Ok(_) => {
            tracing::debug!("{path}: made ahead");
            true
        }
        Err(e) => {
            tracing::debug!("{path}: not made ahead: {e}");
            false
        }
    }
}
