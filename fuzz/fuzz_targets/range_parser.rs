//! The `Range` header parser (RFC 9110 14.2) on arbitrary headers and body
//! lengths: the first 8 bytes are the length, the rest the header. A
//! partial answer must be a non-empty range inside the body.
#![no_main]

use casterpak::server::{parse_range, RangeRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, header)) = data.split_first_chunk::<8>() else {
        return;
    };
    let len = u64::from_be_bytes(*len);
    let header = std::str::from_utf8(header).ok();
    if let RangeRequest::Partial(range) = parse_range(header, len) {
        assert!(range.start < range.end && range.end <= len, "{range:?} of {len}");
    }
});
