//! The cached-index decoder on arbitrary bytes (a cache file is a file like
//! any other): it must return a valid index or an error, and what it
//! returns must be safe to plan and mux, as a freshly parsed index is.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| casterpak::packager::fuzz_regressions::exercise_index(data));
