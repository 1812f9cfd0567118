//! Helpers shared by the CLI tests: running the binary, finding fixtures
//! and tools, and validating a package with ffprobe, ffmpeg and m3u8-rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use m3u8_rs::{MasterPlaylist, MediaPlaylist, Playlist};

pub fn casterpak() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("casterpak").expect("the binary is built")
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether a test can use `what`; without it the test is skipped with a
/// printed reason, except under `CI=true`, where it fails.
pub fn available(what: &str, present: bool) -> bool {
    if !present {
        assert!(!on_ci(), "{what} is required when CI=true");
        eprintln!("skipping: {what} is not available");
    }
    present
}

pub fn have_ffmpeg() -> bool {
    let present = ["ffmpeg", "ffprobe"].iter().all(|tool| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    available("ffmpeg/ffprobe", present)
}

/// Runs `casterpak package` and returns the package directory.
pub fn package(inputs: &[&Path], out: &Path, extra: &[&str]) -> PathBuf {
    casterpak()
        .arg("package")
        .args(inputs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
        .success();
    out.to_owned()
}

pub fn parse_master(path: &Path) -> MasterPlaylist {
    match parse(path) {
        Playlist::MasterPlaylist(m) => m,
        Playlist::MediaPlaylist(_) => panic!("{} is not a master playlist", path.display()),
    }
}

pub fn parse_media(path: &Path) -> MediaPlaylist {
    match parse(path) {
        Playlist::MediaPlaylist(m) => m,
        Playlist::MasterPlaylist(_) => panic!("{} is not a media playlist", path.display()),
    }
}

fn parse(path: &Path) -> Playlist {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    m3u8_rs::parse_playlist_res(&bytes).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

/// ffprobe's count of one stream: `select` is `v:0` or `a:0`; `decode`
/// counts decoded frames, otherwise demuxed packets. None: no such stream.
pub fn ffprobe_count(path: &Path, select: &str, decode: bool) -> Option<u64> {
    let (flag, field) = if decode {
        ("-count_frames", "nb_read_frames")
    } else {
        ("-count_packets", "nb_read_packets")
    };
    let out = Command::new("ffprobe")
        .args(["-v", "error", flag, "-select_streams", select])
        .args([
            "-show_entries",
            &format!("stream={field}"),
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next()?.trim().trim_end_matches(',');
    if first.is_empty() {
        return None;
    }
    Some(
        first
            .parse()
            .unwrap_or_else(|_| panic!("ffprobe count {first:?} for {}", path.display())),
    )
}

/// What `ffmpeg -v error` prints when decoding `path` completely.
pub fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let mut errors = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        errors.push_str(&format!("exit status {}", out.status));
    }
    errors
}

/// `format=start_time` of a file, in seconds.
pub fn start_time(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=start_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("start_time {text:?} of {}", path.display()))
}

/// Checks a package made of `sources` (rendition N = sources[N]) in `dir`
/// with independent tools: the playlists parse and agree with the files,
/// ffprobe counts as many frames as in the source, every segment decodes
/// alone (unless the source itself does not decode cleanly), and segment
/// start times follow the EXTINF durations.
pub fn validate_package(sources: &[&Path], dir: &Path) {
    let master = parse_master(&dir.join("master.m3u8"));
    assert_eq!(
        master.variants.len(),
        sources.len(),
        "one variant per input"
    );
    for (n, (variant, source)) in master.variants.iter().zip(sources).enumerate() {
        assert!(
            variant.uri.starts_with(&format!("index_{n}_")),
            "{}",
            variant.uri
        );
        let playlist_path = dir.join(&variant.uri);
        let media = parse_media(&playlist_path);
        assert_eq!(media.media_sequence, 1);
        assert!(media.end_list);
        let extinf: Vec<f64> = media
            .segments
            .iter()
            .map(|s| f64::from(s.duration))
            .collect();
        let longest = extinf.iter().cloned().fold(0.0, f64::max);
        assert_eq!(
            media.target_duration,
            longest.ceil() as u64,
            "TARGETDURATION"
        );

        let source_clean = decode_errors(source).is_empty();
        let mut previous: Option<f64> = None;
        let mut peak_bps = 0.0f64;
        for (k, segment) in media.segments.iter().enumerate() {
            let path = dir.join(&segment.uri);
            let len = std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .len();
            peak_bps = peak_bps.max(len as f64 * 8.0 / f64::from(segment.duration));
            if source_clean {
                let errors = decode_errors(&path);
                assert!(
                    errors.is_empty(),
                    "{} does not decode alone: {errors}",
                    path.display()
                );
            }
            let start = start_time(&path);
            if let Some(previous) = previous {
                let gap = start - previous;
                assert!(
                    (gap - extinf[k - 1]).abs() < 0.1,
                    "{}: starts {gap:.3} s after the previous segment, whose EXTINF is {:.3}",
                    path.display(),
                    extinf[k - 1]
                );
            }
            previous = Some(start);
        }
        assert_continuous(dir, &media);
        // BANDWIDTH is the peak segment bitrate of the TS as written.
        let declared = variant.bandwidth as f64;
        assert!(
            declared >= peak_bps * 0.99 && declared <= peak_bps * 1.01,
            "BANDWIDTH {declared} vs measured peak {peak_bps:.0}"
        );

        for (select, decode) in [("v:0", true), ("a:0", false)] {
            let want = ffprobe_count(source, select, false);
            let got = ffprobe_count(&playlist_path, select, decode);
            if got.is_some() {
                assert_eq!(
                    got,
                    want,
                    "{select} frames of {} vs {}",
                    playlist_path.display(),
                    source.display()
                );
            }
        }
    }
}

/// The segments of a playlist, joined, are one transport stream: ffmpeg
/// finds no continuity-counter break at the boundaries (RFC 8216 3).
fn assert_continuous(dir: &Path, media: &MediaPlaylist) {
    let joined: Vec<u8> = media
        .segments
        .iter()
        .flat_map(|s| std::fs::read(dir.join(&s.uri)).unwrap())
        .collect();
    let path = dir.join("joined.ts.check");
    std::fs::write(&path, joined).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "debug", "-f", "mpegts", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    std::fs::remove_file(&path).unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let breaks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Continuity check failed"))
        .collect();
    assert!(breaks.is_empty(), "{}: {breaks:?}", dir.display());
}
