//! The MSOD URL grammar on arbitrary paths: a request or an error, never a
//! panic, and no accepted source path that is absolute or climbs out of
//! the media root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| casterpak::packager::fuzz_regressions::exercise_url(data));
