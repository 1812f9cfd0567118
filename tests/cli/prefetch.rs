//! Segments made ahead of players (`server.prefetch`), and the hints that
//! name the next segment to a CDN.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::http_client::Server;
use crate::support::fixture;

/// A 10-second file with a key frame every 2 s, cut into 2-second segments
/// (5 of them) for a target of 1 s, served with
/// `server.prefetch = count` and a debug log in `dir`.
fn serve(dir: &Path, count: &str) -> (Server, std::path::PathBuf) {
    let root = dir.join("media");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(fixture("h264-aac-bframes.mp4"), root.join("film.mp4")).unwrap();
    let log = dir.join("serve.log");
    let env = [
        ("RUST_LOG", "casterpak=debug"),
        ("CASTERPAK_SERVER_PREFETCH", count),
        ("CASTERPAK_MEDIA_SEGMENT_DURATION", "1"),
    ];
    let server = Server::start_logging(&root, &dir.join("cache"), &env, &log);
    (server, log)
}

/// Waits (at most 20 s) for the log to say that `path` was made ahead.
fn wait_made_ahead(log: &Path, path: &str) {
    let line = format!("{path}: made ahead");
    let start = Instant::now();
    while !std::fs::read_to_string(log).unwrap().contains(&line) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{path} was not made ahead"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn made_ahead(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .matches(": made ahead")
        .count()
}

#[test]
fn the_segments_after_a_request_are_made_ahead_and_the_next_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (s, log) = serve(dir.path(), "2");
    let base = "/i/film.mp4";
    let playlist = s.get(&format!("{base}/index_0_av.m3u8"));
    assert_eq!(playlist.status, 200);
    let segments = playlist
        .text()
        .lines()
        .filter(|l| l.starts_with("segment"))
        .count();
    assert_eq!(segments, 5, "{}", playlist.text());
    // The media playlist names its first segment, and the first two are
    // made before the player asks for them.
    let first = format!("{base}/segment1_0_av.ts");
    assert_eq!(
        playlist.header("Link"),
        Some(format!("<{first}>; rel=prefetch").as_str())
    );
    assert_eq!(
        playlist.header("CDN-Origin-Assist-Prefetch-Path"),
        Some(first.as_str())
    );
    // Asked again, it is answered from memory, with the same hints.
    let again = s.get(&format!("{base}/index_0_av.m3u8"));
    assert_eq!(again.header("X-Cache"), Some("HIT"));
    for name in ["Link", "CDN-Origin-Assist-Prefetch-Path", "ETag"] {
        assert_eq!(again.header(name), playlist.header(name), "{name}");
    }
    wait_made_ahead(&log, &first);
    wait_made_ahead(&log, &format!("{base}/segment2_0_av.ts"));
    let reply = s.get(&first);
    assert_eq!((reply.status, reply.header("X-Cache")), (200, Some("HIT")));
    assert_eq!(
        reply.header("Link"),
        Some(format!("<{base}/segment2_0_av.ts>; rel=prefetch").as_str())
    );
    // Segment 1 asked for: 2 is there, 3 is made.
    wait_made_ahead(&log, &format!("{base}/segment3_0_av.ts"));
    for k in 2..=3 {
        let reply = s.get(&format!("{base}/segment{k}_0_av.ts"));
        assert_eq!(reply.header("X-Cache"), Some("HIT"), "segment {k}");
    }
    // Segment 3 asked for: 4 and 5 are made, and nothing past 5, the last.
    wait_made_ahead(&log, &format!("{base}/segment5_0_av.ts"));
    std::thread::sleep(Duration::from_millis(300));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(!log_text.contains("segment6_0_av.ts"), "{log_text}");
    assert_eq!(made_ahead(&log), 5, "{log_text}");
    // The last segment names nothing.
    let last = s.get(&format!("{base}/segment5_0_av.ts"));
    assert_eq!((last.status, last.header("X-Cache")), (200, Some("HIT")));
    assert_eq!(last.header("Link"), None);
    assert_eq!(last.header("CDN-Origin-Assist-Prefetch-Path"), None);
    // CMAF fragments: the same, per track.
    let fragment = s.get("/cmaf/film.mp4/seg2_0_a.m4s");
    assert_eq!(fragment.status, 200);
    assert_eq!(
        fragment.header("Link"),
        Some("</cmaf/film.mp4/seg3_0_a.m4s>; rel=prefetch")
    );
    wait_made_ahead(&log, "/cmaf/film.mp4/seg4_0_a.m4s");
    assert_eq!(
        s.get("/cmaf/film.mp4/seg3_0_a.m4s").header("X-Cache"),
        Some("HIT")
    );
}

#[test]
fn prefetch_0_makes_nothing_ahead_and_names_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (s, log) = serve(dir.path(), "0");
    let playlist = s.get("/i/film.mp4/index_0_av.m3u8");
    assert_eq!(playlist.status, 200);
    assert_eq!(playlist.header("Link"), None);
    let first = s.get("/i/film.mp4/segment1_0_av.ts");
    assert_eq!(first.header("X-Cache"), Some("MISS"));
    assert_eq!(first.header("Link"), None);
    assert_eq!(first.header("CDN-Origin-Assist-Prefetch-Path"), None);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        s.get("/i/film.mp4/segment2_0_av.ts").header("X-Cache"),
        Some("MISS")
    );
    assert_eq!(made_ahead(&log), 0);
}

/// A master: the first segment of its first rendition is made before the
/// player has read its media playlist (each track's, for CMAF).
#[test]
fn after_a_master_its_first_segment_is_made_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let (s, log) = serve(dir.path(), "1");
    let master = s.get("/i/film.mp4/master.m3u8");
    assert_eq!(master.status, 200);
    assert_eq!(
        master.header("Link"),
        Some("</i/film.mp4/segment1_0_av.ts>; rel=prefetch")
    );
    wait_made_ahead(&log, "/i/film.mp4/segment1_0_av.ts");
    assert_eq!(
        s.get("/i/film.mp4/segment1_0_av.ts").header("X-Cache"),
        Some("HIT")
    );
    assert_eq!(s.get("/cmaf/film.mp4/manifest.mpd").status, 200);
    for track in ["v", "a"] {
        let path = format!("/cmaf/film.mp4/seg1_0_{track}.m4s");
        wait_made_ahead(&log, &path);
        assert_eq!(s.get(&path).header("X-Cache"), Some("HIT"), "{path}");
    }
    // Then the segments after those the player asked for, and nothing
    // else.
    wait_made_ahead(&log, "/i/film.mp4/segment2_0_av.ts");
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&log).unwrap();
    for line in text.lines().filter(|l| l.ends_with(": made ahead")) {
        let made = ["segment1_0_av", "segment2_0_av", "seg1_0_", "seg2_0_"];
        assert!(made.iter().any(|m| line.contains(m)), "{line}");
    }
}
