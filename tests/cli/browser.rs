//! End to end in a real player: headless Chromium with hls.js plays a csmil
//! master from `casterpak serve` (page on another origin, so CORS counts)
//! and `video.currentTime` must advance.

use std::path::Path;
use std::process::Command;

use crate::http_client::Server;
use crate::support::fixture;

#[test]
#[cfg_attr(
    casterpak_no_browser,
    ignore = "needs chromium, node and tests/browser/node_modules (npm ci)"
)]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg")]
fn hls_js_in_chromium_plays_a_csmil_master() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("h264-aac-bframes.mp4"),
        root.path().join("film_hi.mp4"),
    )
    .unwrap();
    // A second rendition that hls.js keeps as a level of its own (it merges
    // variants with the same attributes): H.264, since Chromium's MSE has
    // no HEVC, at another size and bitrate.
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=s=160x90:r=30:d=4")
        .args(["-f", "lavfi", "-i", "sine=f=440:d=4"])
        .args(["-c:v", "libx264", "-g", "60", "-b:v", "100k", "-c:a", "aac"])
        .arg(root.path().join("film_lo.mp4"))
        .status()
        .unwrap();
    assert!(made.success(), "ffmpeg made the second rendition");
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
    assert_eq!(result["levels"], 2, "both renditions are levels: {result}");
}
