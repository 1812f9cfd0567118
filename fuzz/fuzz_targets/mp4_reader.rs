//! The MP4 reader on arbitrary bytes: it must return an index or an error,
//! never panic, hang or allocate beyond what the input could describe. What
//! it returns must also be safe to plan segments from and to mux, with the
//! input itself standing in for the media data, and what the index cache
//! keeps of it must decode to the same index.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| casterpak::packager::fuzz_regressions::exercise(data));
