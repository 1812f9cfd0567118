//! Single flight: concurrent requests for the same missing object make it
//! once; the others wait, for a bounded time, and get what the first made
//! (a cached object's body, a parsed source).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::Body;

/// What the leader made (by default a body and its length), or `None`
/// when it failed.
type Outcome<T> = Option<T>;

pub struct Flights<T = (Body, u64)> {
    running: Mutex<HashMap<String, Arc<Flight<T>>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            running: Mutex::default(),
        }
    }
}

struct Flight<T> {
    /// `None` while running; `Some(None)` if the leader failed.
    outcome: Mutex<Option<Outcome<T>>>,
    done: Condvar,
}

impl<T> Default for Flight<T> {
    fn default() -> Self {
        Flight {
            outcome: Mutex::new(None),
            done: Condvar::new(),
        }
    }
}

pub enum Role<'a, T = (Body, u64)> {
    /// Make the object, then call [`Leader::finish`].
    Leader(Leader<'a, T>),
    /// Another request made it: this is its body, or `None` if it failed
    /// (then try again, as a leader).
    Follower(Outcome<T>),
    /// The leader did not finish within the wait.
    TimedOut,
}

impl<T: Clone> Flights<T> {
    /// Leads the making of `key`, or waits at most `wait` for its leader.
    pub fn join(&self, key: &str, wait: Duration) -> Role<'_, T> {
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
        let deadline = Instant::now() + wait;
        let mut outcome = flight.outcome.lock().expect("flight lock");
        while outcome.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Role::TimedOut;
            }
            outcome = flight
                .done
                .wait_timeout(outcome, left)
                .expect("flight lock")
                .0;
        }
        Role::Follower(outcome.clone().flatten())
    }
}

pub struct Leader<'a, T> {
    flights: &'a Flights<T>,
    key: String,
    finished: bool,
}

impl<T> Leader<'_, T> {
    pub fn finish(mut self, outcome: Outcome<T>) {
        self.release(outcome);
    }

    fn release(&mut self, outcome: Outcome<T>) {
        self.finished = true;
        let flight = self
            .flights
            .running
            .lock()
            .expect("flights lock")
            .remove(&self.key);
        if let Some(flight) = flight {
            *flight.outcome.lock().expect("flight lock") = Some(outcome);
            flight.done.notify_all();
        }
    }
}

impl<T> Drop for Leader<'_, T> {
    /// A leader that panicked or returned early still wakes its followers.
    fn drop(&mut self) {
        if !self.finished {
            self.release(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_of_a_stuck_leader_gives_up_after_its_wait() {
        let flights: Flights = Flights::default();
        let leader = match flights.join("k", Duration::from_secs(1)) {
            Role::Leader(l) => l,
            _ => panic!("the first is the leader"),
        };
        std::thread::scope(|scope| {
            let follower = scope.spawn(|| flights.join("k", Duration::from_millis(50)));
            assert!(matches!(follower.join().unwrap(), Role::TimedOut));
        });
        leader.finish(None);
        // The key is free again.
        assert!(matches!(
            flights.join("k", Duration::from_millis(1)),
            Role::Leader(_)
        ));
    }

    #[test]
    fn followers_get_the_leaders_body() {
        let flights: Flights = Flights::default();
        let Role::Leader(leader) = flights.join("k", Duration::from_secs(1)) else {
            panic!("the first is the leader")
        };
        std::thread::scope(|scope| {
            let follower = scope.spawn(|| flights.join("k", Duration::from_secs(30)));
            // Let the follower start waiting, then finish.
            while flights
                .running
                .lock()
                .unwrap()
                .get("k")
                .map(Arc::strong_count)
                != Some(2)
            {
                std::thread::yield_now();
            }
            leader.finish(Some((Body::Bytes(Arc::new(vec![1, 2, 3])), 3)));
            match follower.join().unwrap() {
                Role::Follower(Some((Body::Bytes(b), 3))) => assert_eq!(*b, [1, 2, 3]),
                _ => panic!("the follower gets the bytes"),
            }
        });
    }
}
