//! End to end in real players: headless Chromium with hls.js, dash.js and
//! Shaka Player plays csmil sets from `casterpak serve` (page on another
//! origin, so CORS counts): MPEG-TS HLS, fMP4 HLS and DASH, and
//! `video.currentTime` must advance, also after a forced rendition switch.

use std::path::Path;
use std::process::Command;

use crate::http_client::Server;
use crate::support::fixture;

#[test]
#[cfg_attr(
    any(casterpak_no_browser, casterpak_no_ffmpeg),
    ignore = "needs chromium, node and tests/browser/node_modules (npm ci); needs ffmpeg"
)]
fn hls_js_in_chromium_plays_a_csmil_master() {
    let root = two_renditions();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let url = format!(
        "http://{}/i/film_,hi,lo,.mp4.csmil/master.m3u8",
        server.addr
    );
    let result = play("hls", &url, &[]);
    assert!(result["currentTime"].as_f64().unwrap() >= 3.0, "{result}");
    assert_eq!(result["fatal"], serde_json::Value::Null);
    assert_eq!(result["levels"], 2, "both renditions are levels: {result}");
}

/// Two H.264 renditions a player keeps apart (it merges variants with the
/// same attributes: another size and bitrate; H.264, since Chromium's MSE
/// has no HEVC) in a new media root: `film_,hi,lo,.mp4.csmil`.
pub fn two_renditions() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("h264-aac-bframes.mp4"),
        root.path().join("film_hi.mp4"),
    )
    .unwrap();
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=s=160x90:r=30:d=10")
        .args(["-f", "lavfi", "-i", "sine=f=440:d=10"])
        .args(["-c:v", "libx264", "-g", "60", "-b:v", "100k", "-c:a", "aac"])
        .arg(root.path().join("film_lo.mp4"))
        .status()
        .unwrap();
    assert!(made.success(), "ffmpeg made the second rendition");
    root
}

/// Plays `url` with `player` (and `extra` options of play.mjs); its report.
pub fn play(player: &str, url: &str, extra: &[&str]) -> serde_json::Value {
    play_to(player, url, 3, extra)
}

/// As [`play`], until `seconds` have played.
pub fn play_to(player: &str, url: &str, seconds: u32, extra: &[&str]) -> serde_json::Value {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let out = Command::new("node")
        .arg(browser_dir.join("play.mjs"))
        .arg(url)
        .arg(seconds.to_string())
        .args(["--player", player])
        .args(extra)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{player} failed on {url}: {report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(report.trim()).expect("one JSON line")
}

#[test]
#[cfg_attr(
    any(casterpak_no_browser, casterpak_no_ffmpeg),
    ignore = "needs chromium, node and tests/browser/node_modules (npm ci); needs ffmpeg"
)]
fn dash_js_shaka_and_hls_js_play_cmaf_and_switch_renditions() {
    let root = two_renditions();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let base = format!("http://{}/cmaf/film_,hi,lo,.mp4.csmil", server.addr);
    let mpd = format!("{base}/manifest.mpd");
    let hls = format!("{base}/master.m3u8");
    for (player, url) in [
        ("dashjs", &mpd),
        ("shaka", &mpd),
        ("hls", &hls),
        ("shaka", &hls),
    ] {
        let result = play(player, url, &["--switch-video"]);
        assert_eq!(result["ok"], true, "{player} {url}: {result}");
        assert!(result["currentTime"].as_f64().unwrap() >= 3.0, "{result}");
        assert_eq!(
            result["video"].as_array().map(Vec::len),
            Some(2),
            "{player}: both renditions: {result}"
        );
        let switch = &result["switches"][0];
        assert_eq!(switch["changed"], true, "{player} {url}: {result}");
        assert_eq!(switch["advanced"], true, "{player} {url}: {result}");
    }
}

#[test]
#[cfg_attr(
    casterpak_no_browser,
    ignore = "needs chromium, node and tests/browser/node_modules (npm ci)"
)]
fn av1_opus_and_vp9_flac_play_as_cmaf() {
    let root = tempfile::tempdir().unwrap();
    for name in ["av1-opus.mp4", "vp9-flac.mp4"] {
        std::fs::copy(fixture(name), root.path().join(name)).unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    for (player, name, manifest) in [
        ("dashjs", "av1-opus.mp4", "manifest.mpd"),
        ("hls", "vp9-flac.mp4", "master.m3u8"),
    ] {
        let url = format!("http://{}/cmaf/{name}/{manifest}", server.addr);
        let result = play(player, &url, &[]);
        assert_eq!(result["ok"], true, "{player} {url}: {result}");
        assert!(result["currentTime"].as_f64().unwrap() >= 3.0, "{result}");
    }
}

#[test]
#[cfg_attr(
    casterpak_no_browser,
    ignore = "needs chromium, node and tests/browser/node_modules (npm ci)"
)]
fn players_switch_between_the_audio_languages_of_a_file() {
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("h264-aac-2lang.mp4"), root.path().join("film.mp4")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let base = format!("http://{}", server.addr);
    for (player, manifest) in [
        ("dashjs", "cmaf/film.mp4/manifest.mpd"),
        ("shaka", "cmaf/film.mp4/manifest.mpd"),
        ("hls", "cmaf/film.mp4/master.m3u8"),
        // MPEG-TS: the other language as an audio-only rendition.
        ("hls", "i/film.mp4/master.m3u8"),
    ] {
        let url = format!("{base}/{manifest}");
        // Both, in turn: players differ in the one they start with.
        let result = play(
            player,
            &url,
            &["--switch-audio", "eng", "--switch-audio", "fra"],
        );
        assert_eq!(result["ok"], true, "{player}: {result}");
        assert_eq!(
            result["audio"].as_array().map(Vec::len),
            Some(2),
            "{player}: two languages: {result}"
        );
        for switch in result["switches"].as_array().unwrap() {
            assert_eq!(switch["ok"], true, "{player}: {switch}");
            assert_eq!(switch["advanced"], true, "{player}: {switch}");
        }
    }
}
