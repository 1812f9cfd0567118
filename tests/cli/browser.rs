//! End to end in a real player: headless Chromium with hls.js plays a csmil
//! master from `casterpak serve` (page on another origin, so CORS counts)
//! and `video.currentTime` must advance.

use std::path::Path;
use std::process::Command;

use crate::http_client::Server;
use crate::support::{available, fixture};

#[test]
fn hls_js_in_chromium_plays_a_csmil_master() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready = Path::new(&chromium).exists()
        && browser_dir.join("node_modules/hls.js").exists()
        && browser_dir.join("node_modules/playwright-core").exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !available(
        "chromium, node and tests/browser/node_modules (npm ci)",
        ready,
    ) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("h264-aac-bframes.mp4"),
        root.path().join("film_hi.mp4"),
    )
    .unwrap();
    // Chromium's MSE has no HEVC, so both renditions are H.264.
    std::fs::copy(
        fixture("h264-aac-moov-end.mp4"),
        root.path().join("film_lo.mp4"),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let url = format!(
        "http://{}/i/film_,hi,lo,.mp4.csmil/master.m3u8",
        server.addr
    );
    let out = Command::new("node")
        .arg(browser_dir.join("play.mjs"))
        .arg(&url)
        .arg("3")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "playback failed: {report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(report.trim()).expect("one JSON line");
    assert!(result["currentTime"].as_f64().unwrap() >= 3.0, "{result}");
    assert_eq!(result["fatal"], serde_json::Value::Null);
    // hls.js merges variants with identical attributes into one level with
    // a fallback URL, so the two renditions here make one level.
    assert!(result["levels"].as_u64().unwrap() >= 1, "{result}");
}
