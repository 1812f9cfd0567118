//! Replays the inputs the fuzz target once crashed on (`fuzz/regressions/`)
//! through the same steps as the target: read, plan, size and mux.

use crate::packager::{index_codec, mp4, segment, ts};

/// The body of `fuzz/fuzz_targets/mp4_reader.rs`.
pub fn exercise(data: &[u8]) {
    let _ = index_codec::decode(data);
    let Ok(index) = mp4::read_index_from_bytes(data) else {
        return;
    };
    let plan = segment::plan(&index, 6 * 90_000);
    let layout = ts::layout(&index, &plan.segments);
    for (segment, at) in plan.segments.iter().zip(&layout).take(4) {
        let input = ts::SegmentInput {
            index: &index,
            segment,
            offset_90k: plan.stream_offset_90k,
            continuity: at.continuity,
        };
        let _ = ts::write_segment(&input, &data, &mut std::io::sink(), ts::BATCH_BYTES);
    }
}

#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "mp4") {
            exercise(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    assert!(count > 0, "no regressions found in {}", dir.display());
}
