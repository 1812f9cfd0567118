//! The MP4 reader on arbitrary bytes: it must return an index or an error,
//! never panic, hang or allocate beyond what the input could describe. What
//! it returns must also be safe to plan segments from and to mux, with the
//! input itself standing in for the media data.
#![no_main]

use casterpak::packager::{media::SegmentMedia, mp4, segment, ts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(index) = mp4::read_index_from_bytes(data) else { return };
    let plan = segment::plan(&index, 6 * 90_000);
    for seg in plan.segments.iter().take(4) {
        let _ = ts::segment_len_bytes(&index, seg);
        if let Ok(media) = SegmentMedia::from_bytes(data, &index, seg) {
            let _ = ts::write_segment(&index, seg, plan.stream_offset_90k, &media);
        }
    }
});
