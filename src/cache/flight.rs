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
    state: Mutex<State<T>>,
    changed: Condvar,
}

struct State<T> {
    /// `None` while it is made; `Some(None)` if the leader failed.
    outcome: Option<Outcome<T>>,
    /// Whether the leader is done (has stored what it made, or failed).
    finished: bool,
}

impl<T> Default for Flight<T> {
    fn default() -> Self {
        Flight {
            state: Mutex::new(State {
                outcome: None,
                finished: false,
            }),
            changed: Condvar::new(),
        }
    }
}

pub enum Role<'a, T = (Body, u64)> {
    /// Make the object, then call [`Leader::finish`].
    Leader(Leader<'a, T>),
    /// Another request made it: this is its body, or `None` if it failed
    /// (then try again, as a leader).
    Follower(Outcome<T>),
    /// It was made before this request came and has just been stored:
    /// look it up again.
    Stored,
    /// The leader did not finish within the wait.
    TimedOut,
}

impl<T: Clone> Flights<T> {
    /// Leads the making of `key`, or waits at most `wait` for its leader.
    ///
    /// A follower that came while the object was being made gets it as
    /// soon as it is whole ([`Leader::share`]). One that comes after, while
    /// it is stored, waits for the store and then finds it in the cache
    /// ([`Role::Stored`]): a client that has had the whole object and asks
    /// again gets a hit. The store itself waits for the answers sending
    /// the object, at most [`super::Cache::answer_wait`].
    pub fn join(&self, key: &str, wait: Duration) -> Role<'_, T> {
        // Whether it came late (after the leader shared what it made) is
        // told as it joins, under the same lock: a follower that joined
        // before the share but looks at the flight after it is not late.
        let (flight, late) = {
            let mut running = self.running.lock().expect("flights lock");
            match running.get(key) {
                Some(f) => {
                    let late = f.state.lock().expect("flight lock").outcome.is_some();
                    (Arc::clone(f), late)
                }
                None => {
                    let flight = Arc::default();
                    running.insert(key.to_string(), Arc::clone(&flight));
                    return Role::Leader(Leader {
                        flights: self,
                        flight,
                        key: key.to_string(),
                        finished: false,
                    });
                }
            }
        };
        let deadline = Instant::now() + wait;
        let mut state = flight.state.lock().expect("flight lock");
        while !(state.finished || (state.outcome.is_some() && !late)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Role::TimedOut;
            }
            state = flight
                .changed
                .wait_timeout(state, left)
                .expect("flight lock")
                .0;
        }
        if late {
            return Role::Stored;
        }
        Role::Follower(state.outcome.clone().flatten())
    }
}

pub struct Leader<'a, T> {
    flights: &'a Flights<T>,
    flight: Arc<Flight<T>>,
    key: String,
    finished: bool,
}

impl<T> Leader<'_, T> {
    /// Hands `outcome` to the followers waiting now, while the leader goes
    /// on (to store what it made): their answers start as soon as the
    /// leader's does.
    pub fn share(&self, outcome: T) {
        self.flight.state.lock().expect("flight lock").outcome = Some(Some(outcome));
        self.flight.changed.notify_all();
    }

    pub fn finish(mut self, outcome: Outcome<T>) {
        self.release(outcome);
    }

    fn release(&mut self, outcome: Outcome<T>) {
        self.finished = true;
        self.flights
            .running
            .lock()
            .expect("flights lock")
            .remove(&self.key);
        let mut state = self.flight.state.lock().expect("flight lock");
        // A failure after sharing (storing failed) leaves what was shared:
        // those bytes are whole.
        if outcome.is_some() || state.outcome.is_none() {
            state.outcome = Some(outcome);
        }
        state.finished = true;
        drop(state);
        self.flight.changed.notify_all();
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
    fn followers_get_what_the_leader_shares_and_latecomers_wait_for_the_store() {
        let flights: Flights = Flights::default();
        let Role::Leader(leader) = flights.join("k", Duration::from_secs(1)) else {
            panic!("the first is the leader")
        };
        std::thread::scope(|scope| {
            let early = scope.spawn(|| flights.join("k", Duration::from_secs(30)));
            while flights
                .running
                .lock()
                .unwrap()
                .get("k")
                .map(Arc::strong_count)
                != Some(3)
            {
                std::thread::yield_now();
            }
            leader.share((Body::Bytes(Arc::new(vec![7])), 1));
            // The one waiting has the bytes while the leader still stores.
            match early.join().unwrap() {
                Role::Follower(Some((Body::Bytes(b), 1))) => assert_eq!(*b, [7]),
                _ => panic!("an early follower gets the shared body"),
            }
            // One that comes now waits for the store, then looks it up.
            assert!(matches!(
                flights.join("k", Duration::from_millis(20)),
                Role::TimedOut
            ));
            let late = scope.spawn(|| flights.join("k", Duration::from_secs(30)));
            while flights
                .running
                .lock()
                .unwrap()
                .get("k")
                .map(Arc::strong_count)
                != Some(3)
            {
                std::thread::yield_now();
            }
            leader.finish(Some((Body::Bytes(Arc::new(vec![7])), 1)));
            assert!(matches!(late.join().unwrap(), Role::Stored));
        });
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
            // Let the follower start waiting (the flight then has three
            // owners: the map, the leader and the follower), then finish.
            while flights
                .running
                .lock()
                .unwrap()
                .get("k")
                .map(Arc::strong_count)
                != Some(3)
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
