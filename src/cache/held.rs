//! Objects held in memory for their answers ([`Cache::get_or_stream`]):
//! answered from memory as soon as they are whole, and written to their
//! cache files once the answers that took them have sent them, so that the
//! write does not take the CPU the answers need.
//!
//! [`Cache::get_or_stream`]: super::Cache::get_or_stream

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// An object's bytes held in memory while they are answered, counted
/// against the cache's budget for them until the last answer is done.
pub struct Held {
    bytes: Vec<u8>,
    budget: Arc<AtomicU64>,
    answers: Mutex<Answers>,
    answered: Condvar,
}

/// Answers that took the bytes ([`Held::answer`]), and those done with
/// them.
#[derive(Clone, Copy, Default)]
struct Answers {
    taken: u32,
    done: u32,
}

/// How [`Held::wait_answered`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    /// No answer had taken the bytes.
    NoAnswer,
    /// Every answer that took them is done with them.
    Answered,
    /// Some were not done when the wait ran out.
    TimedOut,
}

impl Held {
    /// `bytes`, counted in `budget` already (by their capacity): given
    /// back when the last holder drops them.
    pub(super) fn new(bytes: Vec<u8>, budget: Arc<AtomicU64>) -> Held {
        Held {
            bytes,
            budget,
            answers: Mutex::default(),
            answered: Condvar::new(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes for an answer that sends them, until it drops them.
    pub fn answer(self: &Arc<Self>) -> Answering {
        self.answers.lock().expect("answers lock").taken += 1;
        Answering(Arc::clone(self))
    }

    /// Waits, for at most `limit`, until every answer that took the bytes
    /// is done with them.
    pub(super) fn wait_answered(&self, limit: Duration) -> Waited {
        let begun = Instant::now();
        let mut answers = self.answers.lock().expect("answers lock");
        loop {
            let Answers { taken, done } = *answers;
            if taken == 0 {
                return Waited::NoAnswer;
            }
            if done == taken {
                return Waited::Answered;
            }
            let waited = begun.elapsed();
            if waited >= limit {
                return Waited::TimedOut;
            }
            answers = self
                .answered
                .wait_timeout(answers, limit - waited)
                .expect("answers lock")
                .0;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget
            .fetch_sub(self.bytes.capacity() as u64, Ordering::Relaxed);
    }
}

/// An answer's hold on [`Held`] bytes: dropping it tells
/// [`Held::wait_answered`] that the answer is done with them.
pub struct Answering(Arc<Held>);

impl Answering {
    pub fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl AsRef<[u8]> for Answering {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answers.lock().expect("answers lock").done += 1;
        self.0.answered.notify_all();
    }
}
