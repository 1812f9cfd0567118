//! Single flight: concurrent requests for the same missing object make it
//! once; the others wait and get the same bytes.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

type Outcome = Option<Arc<Vec<u8>>>;

#[derive(Default)]
pub struct Flights {
    running: Mutex<HashMap<String, Arc<Flight>>>,
}

#[derive(Default)]
struct Flight {
    /// `None` while running; `Some(None)` if the leader failed.
    outcome: Mutex<Option<Outcome>>,
    done: Condvar,
}

pub enum Role<'a> {
    /// Make the object, then call [`Leader::finish`].
    Leader(Leader<'a>),
    /// Another request made it: these are its bytes, or `None` if it failed
    /// (then try again, as a leader).
    Follower(Outcome),
}

impl Flights {
    pub fn join(&self, key: &str) -> Role<'_> {
        let flight = {
            let mut running = self.running.lock().expect("flights lock");
            match running.get(key) {
                Some(f) => Arc::clone(f),
                None => {
                    running.insert(key.to_string(), Arc::default());
                    return Role::Leader(Leader {
                        flights: self,
                        key: key.to_string(),
                        finished: false,
                    });
                }
            }
        };
        let mut outcome = flight.outcome.lock().expect("flight lock");
        while outcome.is_none() {
            outcome = flight.done.wait(outcome).expect("flight lock");
        }
        Role::Follower(outcome.clone().flatten())
    }
}

pub struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    finished: bool,
}

impl Leader<'_> {
    pub fn finish(mut self, bytes: Option<Arc<Vec<u8>>>) {
        self.release(bytes);
    }

    fn release(&mut self, bytes: Outcome) {
        self.finished = true;
        let flight = self
            .flights
            .running
            .lock()
            .expect("flights lock")
            .remove(&self.key);
        if let Some(flight) = flight {
            *flight.outcome.lock().expect("flight lock") = Some(bytes);
            flight.done.notify_all();
        }
    }
}

impl Drop for Leader<'_> {
    /// A leader that panicked or returned early still wakes its followers.
    fn drop(&mut self) {
        if !self.finished {
            self.release(None);
        }
    }
}
