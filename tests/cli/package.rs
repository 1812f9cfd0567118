//! `casterpak package`: the project's own fixtures, packaged and validated.

use std::fs;
use std::path::Path;
use std::process::Command;

use predicates::prelude::*;

use crate::support::{
    assert_golden, casterpak, fixture, package, parse_master, parse_media, validate_package,
    with_nal_length_size,
};

/// Every fixture with the kinds of rendition it makes.
const FIXTURES: &[(&str, &str)] = &[
    ("h264-aac-bframes.mp4", "av"),
    ("h264-aac-moov-end.mp4", "av"),
    ("h264-aac-fragmented.mp4", "av"),
    ("hevc-aac.mp4", "av"),
    ("hevc-open-gop.mp4", "av"),
    ("h264-aac-small-slices.mp4", "av"),
    ("aac-only.m4a", "a"),
    ("ac3.mp4", "av"),
    ("eac3-only.mp4", "a"),
    ("mp3-only.mp4", "a"),
    ("hevc-hev1-inband.mp4", "v"),
];

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn every_fixture_packages_and_validates() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, kind) in FIXTURES {
        let source = fixture(name);
        let dir = package(&[&source], &tmp.path().join(name), &[]);
        assert!(
            dir.join(format!("index_0_{kind}.m3u8")).exists(),
            "{name} is {kind}"
        );
        validate_package(&[&source], &dir);
    }
}

#[test]
fn playlists_match_the_golden_files() {
    // Set UPDATE_GOLDEN=1 to rewrite them after a deliberate change.
    let tmp = tempfile::tempdir().unwrap();
    let golden_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/golden");
    for (name, kind) in FIXTURES {
        let dir = package(&[&fixture(name)], &tmp.path().join(name), &[]);
        for file in ["master.m3u8".to_string(), format!("index_0_{kind}.m3u8")] {
            let got = fs::read_to_string(dir.join(&file)).unwrap();
            assert_golden(&golden_root.join(name).join(&file), &got);
        }
    }
}

#[test]
fn segments_follow_keyframes_and_the_target_duration() {
    let tmp = tempfile::tempdir().unwrap();
    // 10 s with a keyframe every 2 s: 6 s + 4 s by default, five 2 s segments at 2.
    let source = fixture("h264-aac-bframes.mp4");
    let six =
        parse_media(&package(&[&source], &tmp.path().join("six"), &[]).join("index_0_av.m3u8"));
    let durations: Vec<f32> = six.segments.iter().map(|s| s.duration).collect();
    assert_eq!(durations.len(), 2);
    assert!((durations[1] - 4.0).abs() < 0.001, "{durations:?}");
    let two = package(
        &[&source],
        &tmp.path().join("two"),
        &["--segment-duration", "2"],
    );
    let two = parse_media(&two.join("index_0_av.m3u8"));
    assert_eq!(two.segments.len(), 5);
    assert_eq!(
        two.target_duration, 3,
        "2.023 s for the first segment rounds up to 3"
    );
    // Audio only is cut by time.
    let audio = package(
        &[&fixture("aac-only.m4a")],
        &tmp.path().join("a"),
        &["--segment-duration", "4"],
    );
    assert_eq!(parse_media(&audio.join("index_0_a.m3u8")).segments.len(), 3);
}

/// x265's default open GOP marks every CRA as a sync sample, but most of
/// them are followed by RASL pictures that a decoder starting there drops
/// without an error: segments cut at them lost frames and started with
/// pictures presented before the cut. Only the IDR at 0 s and the CRA at
/// 2 s (no RASL after it) may start a segment.
#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn open_gop_hevc_is_cut_only_where_a_decoder_can_start() {
    let tmp = tempfile::tempdir().unwrap();
    let source = fixture("hevc-open-gop.mp4");
    let dir = package(
        &[&source],
        &tmp.path().join("one"),
        &["--segment-duration", "1"],
    );
    let media = parse_media(&dir.join("index_0_av.m3u8"));
    let durations: Vec<f32> = media.segments.iter().map(|s| s.duration).collect();
    assert_eq!(durations.len(), 2, "{durations:?}");
    assert!((durations[0] - 2.0).abs() < 0.05, "{durations:?}");
    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    assert!(master.contains("#EXT-X-INDEPENDENT-SEGMENTS\n"), "{master}");
    validate_package(&[&source], &dir);
}

/// With 1- or 2-byte NAL lengths each NAL unit grows by 3 or 2 bytes in
/// Annex B. Sizes were predicted as if lengths took 4 bytes, so access
/// units outgrew them: continuity counters broke at every later segment
/// boundary and BANDWIDTH came out too low.
#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn one_and_two_byte_nal_lengths_keep_counters_and_bandwidth_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let original = fs::read(fixture("h264-aac-small-slices.mp4")).unwrap();
    for len_size in [1, 2] {
        let source = tmp.path().join(format!("nal-length-{len_size}.mp4"));
        fs::write(&source, with_nal_length_size(&original, len_size)).unwrap();
        let out = tmp.path().join(format!("pkg-{len_size}"));
        let dir = package(&[&source], &out, &["--segment-duration", "2"]);
        assert_eq!(
            parse_media(&dir.join("index_0_av.m3u8")).segments.len(),
            3,
            "keyframes at 0, 2 and 4 s"
        );
        assert!(
            crate::support::decode_errors(&source).is_empty(),
            "the rewritten source decodes"
        );
        validate_package(&[&source], &dir);
    }
}

#[test]
fn segments_are_identical_whatever_the_order_they_are_made_in() {
    let tmp = tempfile::tempdir().unwrap();
    let source = fixture("hevc-aac.mp4");
    let one = package(
        &[&source],
        &tmp.path().join("one"),
        &["--jobs", "1", "--segment-duration", "2"],
    );
    let four = package(
        &[&source],
        &tmp.path().join("four"),
        &["--jobs", "4", "--segment-duration", "2"],
    );
    let names: Vec<_> = fs::read_dir(&one)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // The playlists (master, media, I-frames) and 4 segments.
    assert_eq!(names.len(), 3 + 4);
    for name in names {
        assert_eq!(
            fs::read(one.join(&name)).unwrap(),
            fs::read(four.join(&name)).unwrap(),
            "{name:?}"
        );
    }
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn several_inputs_make_one_master_with_a_rendition_each() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = [
        fixture("h264-aac-bframes.mp4"),
        fixture("hevc-aac.mp4"),
        fixture("aac-only.m4a"),
    ];
    let refs: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
    let dir = package(&refs, &tmp.path().join("multi"), &[]);
    let master = parse_master(&dir.join("master.m3u8"));
    let uris: Vec<&str> = master.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "index_0_av.m3u8",
            "index_1_av.m3u8",
            "index_2_a.m3u8",
            "iframes_0_av.m3u8",
            "iframes_1_av.m3u8"
        ]
    );
    let codecs: Vec<_> = master
        .variants
        .iter()
        .map(|v| v.codecs.clone().unwrap())
        .collect();
    assert_eq!(codecs[0], "avc1.64000d,mp4a.40.2");
    assert!(codecs[1].starts_with("hvc1.1.6.L"), "{}", codecs[1]);
    assert_eq!(codecs[2], "mp4a.40.2");
    let first = &master.variants[0];
    assert_eq!(
        first.resolution.map(|r| (r.width, r.height)),
        Some((320, 180))
    );
    assert_eq!(first.frame_rate, Some(30.0));
    assert!(first.average_bandwidth.unwrap() <= first.bandwidth);
    assert!(dir.join("segment2_1_av.ts").exists() && dir.join("segment1_2_a.ts").exists());
    validate_package(&refs, &dir);
}

#[test]
fn json_summary_describes_what_was_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pkg");
    let started = std::time::Instant::now();
    let output = casterpak()
        .args(["package", "--json", "--out"])
        .arg(&out)
        .arg(fixture("ac3.mp4"))
        .output()
        .unwrap();
    let run = started.elapsed().as_secs_f64();
    assert!(output.status.success());
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    let ts_files: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .collect();
    let on_disk: u64 = ts_files
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(summary["segments"], ts_files.len());
    assert_eq!(summary["bytes"], on_disk);
    assert_eq!(summary["renditions"][0]["codecs"], "avc1.64000c,ac-3");
    // The time it took: something, and no more than the whole run.
    let seconds = summary["seconds"].as_f64().unwrap();
    assert!(
        seconds > 0.0 && seconds <= run,
        "{seconds} s of a {run} s run"
    );
}

/// A failed run exits non-zero with one line naming the file and leaves
/// nothing behind: neither the package nor its staging directory.
fn assert_fails_cleanly(inputs: &[&Path], expected: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pkg");
    casterpak()
        .arg("package")
        .args(inputs)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains(expected))
        .stderr(predicate::str::contains("panicked").not());
    let left: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn missing_input_is_a_clear_error() {
    let missing = Path::new("/nonexistent/film.mp4");
    assert_fails_cleanly(&[missing], "/nonexistent/film.mp4: I/O error: No such file");
}

#[test]
fn a_file_that_is_not_mp4_is_a_clear_error() {
    let readme = fixture("README.md");
    assert_fails_cleanly(&[&readme], "not an MP4 or MOV file");
}

#[test]
fn truncated_mp4_is_a_clear_error_and_leaves_no_partial_package() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fs::read(fixture("h264-aac-bframes.mp4")).unwrap();
    let truncated = tmp.path().join("truncated.mp4");
    fs::write(&truncated, &data[..data.len() / 2]).unwrap();
    // The good first input is not enough to leave a package behind.
    assert_fails_cleanly(
        &[&fixture("aac-only.m4a"), &truncated],
        "truncated.mp4: corrupt media",
    );
}

#[test]
fn existing_output_is_kept_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pkg");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep.txt"), "mine").unwrap();
    casterpak()
        .args(["package", "--out"])
        .arg(&out)
        .arg(fixture("aac-only.m4a"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists"));
    assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
    package(&[&fixture("aac-only.m4a")], &out, &["--force"]);
    assert!(!out.join("keep.txt").exists() && out.join("master.m3u8").exists());
    let left: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["pkg"]);
}

#[test]
fn bad_segment_duration_is_rejected() {
    casterpak()
        .args(["package", "--segment-duration", "0", "--out", "/tmp/never"])
        .arg(fixture("aac-only.m4a"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("between 0.1 and 3600"));
}

/// A package holds what the origin serves for its input, byte for byte:
/// the I-frame playlists, the closed captions its video carries, the
/// subtitle renditions of its sidecars and of the tracks in its file
/// (playlists, WebVTT segments, and for DASH the whole files), TS and
/// CMAF alike.
#[test]
fn a_package_holds_what_the_origin_serves() {
    let root = tempfile::tempdir().unwrap();
    let sources = [("film", "h264-aac-tx3g.mp4"), ("cc", "h264-cea608.mp4")];
    for (name, file) in sources {
        fs::copy(fixture(file), root.path().join(format!("{name}.mp4"))).unwrap();
    }
    // German from a sidecar, with a cue that cannot be read, beside the
    // file's English and French tracks; a directory named as a German
    // WebVTT sidecar is none.
    fs::write(
        root.path().join("film.de.srt"),
        "1\n00:00:01,500 --> 00:00:02,500\nEins\n\nbroken\n\n2\n00:00:07,000 --> 00:00:08,000\nZwei\n",
    )
    .unwrap();
    fs::create_dir(root.path().join("film.de.vtt")).unwrap();
    // Two English sidecars of one tag: the first in name order takes the
    // place of the file's English track, whatever the directory's order.
    for (name, text) in [("film.en.vtt", "lower"), ("film.EN.vtt", "upper")] {
        let vtt = format!("WEBVTT\n\n00:00:02.000 --> 00:00:03.000\n{text}\n");
        fs::write(root.path().join(name), vtt).unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let server = crate::http_client::Server::start(root.path(), cache.path(), &[]);
    let tmp = tempfile::tempdir().unwrap();
    for (name, _) in sources {
        let input = root.path().join(format!("{name}.mp4"));
        let out = package(&[&input], &tmp.path().join(name), &["--format", "both"]);
        let mut compared = 0;
        for (dir, prefix) in [(out.clone(), "i"), (out.join("cmaf"), "cmaf")] {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    continue;
                }
                let file = path.file_name().unwrap().to_str().unwrap();
                let reply = server.get(&format!("/{prefix}/{name}.mp4/{file}"));
                assert_eq!(reply.status, 200, "{prefix}/{file}");
                assert!(
                    reply.body == fs::read(&path).unwrap(),
                    "{prefix}/{name}/{file}"
                );
                compared += 1;
            }
        }
        let master = fs::read_to_string(out.join("master.m3u8")).unwrap();
        assert!(master.contains("#EXT-X-I-FRAME-STREAM-INF:"), "{master}");
        let cmaf_master = fs::read_to_string(out.join("cmaf/master.m3u8")).unwrap();
        let mpd = fs::read_to_string(out.join("cmaf/manifest.mpd")).unwrap();
        match name {
            "film" => {
                for tag in ["de", "en", "fr"] {
                    let uri = format!("URI=\"subtitles_{tag}.m3u8\"");
                    assert!(
                        master.contains(&uri) && cmaf_master.contains(&uri),
                        "{master}"
                    );
                    assert!(
                        mpd.contains(&format!("media=\"subtitles_{tag}.vtt\"")),
                        "{mpd}"
                    );
                    for k in [1, 2] {
                        assert!(out.join(format!("subtitles{k}_{tag}.vtt")).exists());
                    }
                }
                // The sidecar's two good cues, as ffprobe reads them.
                let vtt = out.join("cmaf/subtitles_de.vtt");
                let cues = Command::new("ffprobe")
                    .args([
                        "-v",
                        "error",
                        "-show_entries",
                        "packet=pts_time",
                        "-of",
                        "csv=p=0",
                    ])
                    .arg(&vtt)
                    .output()
                    .unwrap();
                assert_eq!(String::from_utf8_lossy(&cues.stdout).lines().count(), 2);
                let english = fs::read_to_string(out.join("cmaf/subtitles_en.vtt")).unwrap();
                assert!(
                    english.contains("upper") && !english.contains("lower"),
                    "{english}"
                );
                assert_eq!(compared, 14 + 25, "every file of the package");
            }
            _ => {
                let id = "INSTREAM-ID=\"CC1\"";
                assert!(master.contains(id) && cmaf_master.contains(id), "{master}");
                assert!(mpd.contains("urn:scte:dash:cc:cea-608:2015"), "{mpd}");
                assert!(!master.contains("SUBTITLES"), "{master}");
            }
        }
    }
}
