//! The bodies of the fuzz targets in `fuzz/fuzz_targets/` that exercise the
//! packager, and a test that replays the inputs they once failed on
//! (`fuzz/regressions/`) through the same steps.

use crate::packager::index::MediaIndex;
use crate::packager::{fmp4, index_codec, mp4, segment, ts, url};

/// `mp4_reader`: the MP4 reader on arbitrary bytes, then everything made
/// from what it returns, with the input standing in for the media data.
pub fn exercise(data: &[u8]) {
    let _ = index_codec::decode(data);
    // Subtitle tracks: cues or an error, within the file's bounds.
    if let Ok(tracks) = mp4::read_text_tracks_from(&data, data.len() as u64) {
        for track in &tracks {
            assert!(track.cues.cues.iter().all(|c| c.end_ms > c.start_ms));
            let _ = track.cues.segment(0, Some(6000), 0);
        }
    }
    let Ok(index) = mp4::read_index_from_bytes(data) else {
        return;
    };
    // What the reader returns, the cache keeps and gives back.
    let decoded = index_codec::decode(&index_codec::encode(&index));
    assert_eq!(decoded.ok().as_ref(), Some(&index), "index round trip");
    plan_and_mux(&index, data);
}

/// `index_decoder`: an index from the cache, as the origin reads it back:
/// decoded (and so validated), then planned and muxed as a parsed one is.
pub fn exercise_index(data: &[u8]) {
    if let Ok(index) = index_codec::decode(data) {
        plan_and_mux(&index, data);
    }
}

/// `url_parser`: what the URL grammar accepts keeps its promises.
pub fn exercise_url(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(request) = url::parse(path) else {
        return;
    };
    assert!(!request.sources.is_empty() && request.sources.len() <= url::MAX_RENDITIONS);
    for source in &request.sources {
        assert!(!source.starts_with('/'), "{source:?} is absolute");
        assert!(!source.contains(['\\', '\0']), "{source:?}");
        for component in source.split('/') {
            assert!(!matches!(component, "" | "." | ".."), "{source:?}");
        }
    }
}

/// Plans, lays out and writes the first few segments of `index`, reading
/// sample bytes from `data`, as MPEG-TS and as CMAF; every step must
/// return, never panic or hang, and what is written is as long as planned.
fn plan_and_mux(index: &MediaIndex, data: &[u8]) {
    let plan = segment::plan(index, 6 * 90_000);
    for track in fmp4::TrackKind::all(index) {
        let _ = fmp4::init_segment(index, track, None);
        for (k, segment) in plan.segments.iter().enumerate().take(4) {
            let mut input = fmp4::FragmentInput {
                index,
                segment,
                number: k as u32 + 1,
                kind: track,
                offset_90k: plan.stream_offset_90k,
                trick: false,
            };
            let mut out = std::io::sink();
            if let Ok(written) = fmp4::write_fragment(&input, &data, &mut out, ts::BATCH_BYTES) {
                assert_eq!(written, fmp4::fragment_len(index, segment, track));
            }
            if track.is_video() {
                input.trick = true;
                if let Ok(written) = fmp4::write_fragment(&input, &data, &mut out, ts::BATCH_BYTES)
                {
                    assert_eq!(written, fmp4::trick_fragment_len(index, segment));
                }
            }
        }
    }
    mux_ts(index, data);
}

fn mux_ts(index: &MediaIndex, data: &[u8]) {
    let plan = segment::plan(index, 6 * 90_000);
    let layout = ts::layout(index, &plan.segments);
    for (segment, at) in plan.segments.iter().zip(&layout).take(4) {
        let input = ts::SegmentInput {
            index,
            segment,
            offset_90k: plan.stream_offset_90k,
            continuity: at.continuity,
        };
        if let Ok(written) = ts::write_segment(&input, &data, &mut std::io::sink(), ts::BATCH_BYTES)
        {
            assert_eq!(written, at.len_bytes, "the layout predicts every segment");
        }
    }
}

#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let run: fn(&[u8]) = match path.extension().and_then(|e| e.to_str()) {
            Some("mp4") => exercise,
            Some("cpix") => exercise_index,
            Some("url") => exercise_url,
            _ => continue,
        };
        let data = std::fs::read(&path).unwrap();
        if path.extension().is_some_and(|e| e == "cpix") {
            // Kept in the current encoding: one the decoder turns away at
            // its first bytes would test nothing.
            if let Err(e) = index_codec::decode(&data) {
                assert!(
                    !e.to_string().contains("of this version"),
                    "{}: {e} (re-encode it)",
                    path.display()
                );
            }
        }
        run(&data);
        count += 1;
    }
    assert!(count > 0, "no regressions found in {}", dir.display());
}
