//! CMAF through `casterpak serve`: fMP4 HLS and DASH over one set of
//! segments, checked with ffprobe and ffmpeg, and against golden files.

use std::fs;
use std::path::{Path, PathBuf};

use crate::http_client::Server;
use crate::support::{assert_golden, decode_errors, ffprobe_count, fixture};

/// Fixtures, with their CMAF tracks (`v`, `a`, `a2`...).
const FIXTURES: &[(&str, &[&str])] = &[
    ("h264-aac-bframes.mp4", &["v", "a"]),
    ("h264-aac-moov-end.mp4", &["v", "a"]),
    ("h264-aac-fragmented.mp4", &["v", "a"]),
    ("hevc-aac.mp4", &["v", "a"]),
    ("hevc-open-gop.mp4", &["v", "a"]),
    ("h264-aac-small-slices.mp4", &["v", "a"]),
    ("aac-only.m4a", &["a"]),
    ("ac3.mp4", &["v", "a"]),
    ("eac3-only.mp4", &["a"]),
    ("mp3-only.mp4", &["a"]),
    // Codecs MPEG-TS cannot carry.
    ("av1-opus.mp4", &["v", "a"]),
    ("vp9-flac.mp4", &["v", "a"]),
    // Two audio languages: eng (enabled), fra.
    ("h264-aac-2lang.mp4", &["v", "a", "a2"]),
    // hev1 whose parameter sets are only in its samples.
    ("hevc-hev1-inband.mp4", &["v"]),
];

/// ffprobe's stream selector of a CMAF track of a one-track file or of
/// the MPD: `v:0`, `a:0`, `a:1`...
fn selector(track: &str) -> String {
    match track {
        "v" => "v:0".into(),
        "a" => "a:0".into(),
        _ => format!("a:{}", track[1..].parse::<usize>().unwrap() - 1),
    }
}

/// A server whose media root holds every fixture.
fn serve_fixtures() -> (Server, tempfile::TempDir, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    for (name, _) in FIXTURES {
        fs::copy(fixture(name), root.path().join(name)).unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    (server, root, cache)
}

fn get(server: &Server, path: &str) -> Vec<u8> {
    let reply = server.get(path);
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.body
}

fn url(server: &Server, path: &str) -> PathBuf {
    PathBuf::from(format!("http://{}{path}", server.addr))
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn the_hls_master_and_the_mpd_carry_every_frame_of_the_source() {
    let (server, _root, _cache) = serve_fixtures();
    for (name, tracks) in FIXTURES {
        let source = fixture(name);
        // The HLS master offers one audio track to ffmpeg; the MPD all.
        for manifest in ["master.m3u8", "manifest.mpd"] {
            let served = url(&server, &format!("/cmaf/{name}/{manifest}"));
            for track in *tracks {
                if manifest == "master.m3u8" && track.len() > 1 {
                    continue;
                }
                let (select, decode) = (selector(track), *track == "v");
                assert_eq!(
                    ffprobe_count(&served, &select, decode),
                    ffprobe_count(&source, &select, decode),
                    "{name} {manifest}: {track} frames (decoded) or packets"
                );
            }
        }
    }
}

/// The segment names of a media playlist.
fn segments_of(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// EXTINF durations of a media playlist, seconds.
fn extinfs(playlist: &str) -> Vec<f64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| d.trim_end_matches(',').parse().unwrap())
        .collect()
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn each_init_and_media_segment_decodes_alone() {
    let (server, _root, _cache) = serve_fixtures();
    let tmp = tempfile::tempdir().unwrap();
    for (name, tracks) in FIXTURES {
        let source = fixture(name);
        for track in *tracks {
            let base = format!("/cmaf/{name}");
            let playlist =
                String::from_utf8(get(&server, &format!("{base}/index_0_{track}.m3u8"))).unwrap();
            assert!(playlist.contains(&format!("#EXT-X-MAP:URI=\"init_0_{track}.mp4\"")));
            let init = get(&server, &format!("{base}/init_0_{track}.mp4"));
            let mut frames = 0;
            for segment in segments_of(&playlist) {
                let mut whole = init.clone();
                whole.extend(get(&server, &format!("{base}/{segment}")));
                let file = tmp.path().join(format!("{name}-{segment}.mp4"));
                fs::write(&file, &whole).unwrap();
                let select = if *track == "v" { "v:0" } else { "a:0" };
                let count = ffprobe_count(&file, select, *track == "v").unwrap_or(0);
                assert!(count > 0, "{name} {segment}: nothing in it");
                frames += count;
                let errors = decode_errors(&file);
                assert!(errors.is_empty(), "{name} {segment} alone: {errors}");
            }
            assert_eq!(
                Some(frames),
                ffprobe_count(&source, &selector(track), *track == "v"),
                "{name} {track}: frames in all segments"
            );
        }
    }
}

/// The timescale and the `(t, d)` of every segment (`r` expanded) of each
/// Representation, in order, as an independent parser (dash-mpd-core)
/// reads the MPD.
fn timelines(mpd: &str) -> Vec<(u64, Vec<(u64, u64)>)> {
    timelines_of(mpd, false)
}

/// The timelines of the Representations of the MPD's trick-mode
/// AdaptationSets (`trick`), or of the others.
fn timelines_of(mpd: &str, trick: bool) -> Vec<(u64, Vec<(u64, u64)>)> {
    let mpd = dash_mpd_core::parse(mpd).expect("an MPD");
    let mut out = Vec::new();
    let is_trick = |set: &dash_mpd_core::AdaptationSet| {
        set.essential_property
            .iter()
            .any(|p| p.schemeIdUri == "http://dashif.org/guidelines/trickmode")
    };
    for set in mpd.periods[0]
        .adaptations
        .iter()
        .filter(|s| is_trick(s) == trick)
    {
        for rep in &set.representations {
            let template = rep
                .SegmentTemplate
                .as_ref()
                .or(set.SegmentTemplate.as_ref())
                .expect("a SegmentTemplate");
            let timeline = template
                .SegmentTimeline
                .as_ref()
                .expect("a SegmentTimeline");
            let (mut t, mut segments) = (0, Vec::new());
            for s in &timeline.segments {
                t = s.t.unwrap_or(t);
                for _ in 0..=s.r.unwrap_or(0) {
                    segments.push((t, s.d));
                    t += s.d;
                }
            }
            out.push((template.timescale.expect("a timescale"), segments));
        }
    }
    out
}

#[test]
fn the_mpd_lists_the_segments_of_the_hls_playlists() {
    let (server, _root, _cache) = serve_fixtures();
    for (name, tracks) in FIXTURES {
        let mpd = String::from_utf8(get(&server, &format!("/cmaf/{name}/manifest.mpd"))).unwrap();
        let timelines = timelines(&mpd);
        assert_eq!(timelines.len(), tracks.len(), "{name}: {mpd}");
        // Trick play: a picture per video segment, on the video's timeline.
        if tracks[0] == "v" {
            assert_eq!(timelines_of(&mpd, true), [timelines[0].clone()], "{name}");
        }
        for (track, (timescale, timeline)) in tracks.iter().zip(&timelines) {
            let playlist =
                String::from_utf8(get(&server, &format!("/cmaf/{name}/index_0_{track}.m3u8")))
                    .unwrap();
            let hls = extinfs(&playlist);
            assert_eq!(timeline.len(), hls.len(), "{name} {track}: segment count");
            for (k, ((t, d), extinf)) in timeline.iter().zip(&hls).enumerate() {
                let seconds = *d as f64 / *timescale as f64;
                // EXTINF is written to the millisecond.
                assert!(
                    (seconds - extinf).abs() < 0.0011,
                    "{name} {track} segment {}: {seconds} s in the MPD, {extinf} s in HLS",
                    k + 1
                );
                if let Some((next, _)) = timeline.get(k + 1) {
                    assert_eq!(
                        t + d,
                        *next,
                        "{name} {track}: a gap after segment {}",
                        k + 1
                    );
                }
            }
        }
    }
}

#[test]
fn manifests_match_the_golden_files() {
    // Set UPDATE_GOLDEN=1 to rewrite them after a deliberate change.
    let (server, _root, _cache) = serve_fixtures();
    let golden_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/golden");
    for (name, tracks) in FIXTURES {
        let mut files = vec!["master.m3u8".to_string(), "manifest.mpd".to_string()];
        files.extend(tracks.iter().map(|t| format!("index_0_{t}.m3u8")));
        for file in &files {
            let got = String::from_utf8(get(&server, &format!("/cmaf/{name}/{file}"))).unwrap();
            assert_golden(&golden_root.join(name).join("cmaf").join(file), &got);
        }
    }
}

#[test]
fn cmaf_answers_carry_their_content_types_and_a_missing_track_is_404() {
    let (server, _root, _cache) = serve_fixtures();
    for (path, content_type) in [
        (
            "/cmaf/h264-aac-bframes.mp4/manifest.mpd",
            "application/dash+xml",
        ),
        (
            "/cmaf/h264-aac-bframes.mp4/master.m3u8",
            "application/vnd.apple.mpegurl",
        ),
        ("/cmaf/h264-aac-bframes.mp4/init_0_v.mp4", "video/mp4"),
        ("/cmaf/h264-aac-bframes.mp4/seg1_0_a.m4s", "audio/mp4"),
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert!(
            reply.header("access-control-allow-origin").is_some(),
            "{path}"
        );
    }
    for path in [
        "/cmaf/aac-only.m4a/init_0_v.mp4",
        "/cmaf/aac-only.m4a/index_0_v.m3u8",
        "/cmaf/h264-aac-bframes.mp4/seg9_0_v.m4s",
        "/cmaf/h264-aac-bframes.mp4/segment1_0_av.ts",
        "/i/h264-aac-bframes.mp4/manifest.mpd",
    ] {
        assert_eq!(server.get(path).status, 404, "{path}");
    }
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn a_static_package_of_both_formats_plays_from_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let sources = [fixture("h264-aac-bframes.mp4"), fixture("aac-only.m4a")];
    let out = tmp.path().join("pkg");
    crate::support::casterpak()
        .arg("package")
        .args(&sources)
        .arg("--out")
        .arg(&out)
        .args(["--format", "both"])
        .assert()
        .success();
    crate::support::validate_package(&[&sources[0], &sources[1]], &out);
    let cmaf = out.join("cmaf");
    for file in [
        "manifest.mpd",
        "master.m3u8",
        "init_0_v.mp4",
        "seg1_1_a.m4s",
    ] {
        assert!(cmaf.join(file).is_file(), "{file}");
    }
    // ffmpeg's DASH demuxer wants an absolute path.
    let mpd = cmaf.join("manifest.mpd").canonicalize().unwrap();
    assert_eq!(
        ffprobe_count(&mpd, "v:0", true),
        ffprobe_count(&sources[0], "v:0", true)
    );
    let only_cmaf = tmp.path().join("cmaf-only");
    crate::support::casterpak()
        .arg("package")
        .arg(&sources[0])
        .arg("--out")
        .arg(&only_cmaf)
        .args(["--format", "cmaf"])
        .assert()
        .success();
    assert!(only_cmaf.join("manifest.mpd").is_file());
    assert!(!only_cmaf.join("segment1_0_av.ts").exists());
}

#[test]
fn pre_warming_cmaf_leaves_every_track_of_every_source_cached() {
    let root = tempfile::tempdir().unwrap();
    for name in ["h264-aac-bframes.mp4", "hevc-aac.mp4"] {
        fs::copy(fixture(name), root.path().join(name)).unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let set = ",h264-aac-bframes,hevc-aac,.mp4.csmil";
    crate::support::casterpak()
        .args(["package", set, "--format", "cmaf", "--root"])
        .arg(root.path())
        .arg("--cache-dir")
        .arg(cache.path())
        .assert()
        .success();
    let server = Server::start(root.path(), cache.path(), &[]);
    let mpd = String::from_utf8(get(&server, &format!("/cmaf/{set}/manifest.mpd"))).unwrap();
    for n in 0..2 {
        for t in ["v", "a"] {
            assert!(mpd.contains(&format!("init_{n}_{t}.mp4")), "{mpd}");
            let playlist = format!("/cmaf/{set}/index_{n}_{t}.m3u8");
            let names = segments_of(&String::from_utf8(get(&server, &playlist)).unwrap());
            for name in names
                .iter()
                .map(String::as_str)
                .chain([format!("init_{n}_{t}.mp4").as_str()])
            {
                let reply = server.get(&format!("/cmaf/{set}/{name}"));
                assert_eq!(reply.status, 200, "{name}");
                assert_eq!(
                    reply.header("x-cache"),
                    Some("HIT"),
                    "{name} was not pre-warmed"
                );
            }
        }
    }
}

#[test]
fn codecs_only_cmaf_carries_are_refused_as_ts_with_the_way_out() {
    let (server, _root, _cache) = serve_fixtures();
    for name in ["av1-opus.mp4", "vp9-flac.mp4"] {
        for path in ["master.m3u8", "index_0_av.m3u8", "segment1_0_av.ts"] {
            let reply = server.get(&format!("/i/{name}/{path}"));
            assert_eq!(reply.status, 422, "{name}/{path}: {}", reply.text());
            assert!(reply.text().contains("/cmaf/"), "{}", reply.text());
        }
        assert_eq!(server.get(&format!("/cmaf/{name}/master.m3u8")).status, 200);
    }
    let tmp = tempfile::tempdir().unwrap();
    crate::support::casterpak()
        .arg("package")
        .arg(fixture("av1-opus.mp4"))
        .arg("--out")
        .arg(tmp.path().join("ts"))
        .assert()
        .failure()
        .stderr(predicates::str::contains("--format cmaf"));
    assert!(!tmp.path().join("ts").exists());
}

/// Issue 10's TS side: an AV source's `_a` and `_v` playlists, and its
/// other audio tracks as audio-only renditions in the master's audio group.
#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn ts_offers_each_track_alone_and_the_other_languages_as_an_audio_group() {
    let (server, _root, _cache) = serve_fixtures();
    let name = "h264-aac-2lang.mp4";
    let source = fixture(name);
    let master = String::from_utf8(get(&server, &format!("/i/{name}/master.m3u8"))).unwrap();
    assert!(
        master.contains(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"fra\",LANGUAGE=\"fra\",\
             DEFAULT=NO,AUTOSELECT=YES,URI=\"index_0_a2.m3u8\""
        ),
        "{master}"
    );
    assert!(
        master.contains("AUDIO=\"audio\"\nindex_0_av.m3u8"),
        "{master}"
    );
    let tmp = tempfile::tempdir().unwrap();
    for (kind, select) in [("v", "v:0"), ("a", "a:0"), ("a2", "a:1")] {
        let playlist = format!("/i/{name}/index_0_{kind}.m3u8");
        let decode = kind == "v";
        let expected = ffprobe_count(&source, select, decode);
        assert_eq!(
            ffprobe_count(
                &url(&server, &playlist),
                if decode { "v:0" } else { "a:0" },
                decode
            ),
            expected,
            "{playlist}"
        );
        let text = String::from_utf8(get(&server, &playlist)).unwrap();
        for segment in segments_of(&text) {
            assert!(segment.ends_with(&format!("_0_{kind}.ts")), "{segment}");
            let file = tmp.path().join(&segment);
            fs::write(&file, get(&server, &format!("/i/{name}/{segment}"))).unwrap();
            let errors = decode_errors(&file);
            assert!(errors.is_empty(), "{segment} alone: {errors}");
        }
    }
    // One audio track: no group, and no `_a2`.
    let single = String::from_utf8(get(&server, "/i/h264-aac-bframes.mp4/master.m3u8")).unwrap();
    assert!(!single.contains("EXT-X-MEDIA"), "{single}");
    assert_eq!(
        server.get("/i/h264-aac-bframes.mp4/index_0_a2.m3u8").status,
        404
    );
    assert_eq!(
        server.get("/i/h264-aac-bframes.mp4/index_0_a.m3u8").status,
        200
    );
}

/// The NAL arrays of the first `hvcC` in `init`: `(array byte, count)`.
fn hvcc_arrays(init: &[u8]) -> Vec<(u8, u16)> {
    let at = init.windows(4).position(|w| w == b"hvcC").expect("an hvcC") + 4;
    let body = &init[at..];
    let mut pos = 23;
    let mut arrays = Vec::new();
    for _ in 0..body[22] {
        let count = u16::from_be_bytes([body[pos + 1], body[pos + 2]]);
        arrays.push((body[pos], count));
        pos += 3;
        for _ in 0..count {
            pos += 2 + usize::from(u16::from_be_bytes([body[pos], body[pos + 1]]));
        }
    }
    arrays
}

#[test]
fn hev1_parameter_sets_in_band_move_into_an_hvc1_sample_entry() {
    let (server, _root, _cache) = serve_fixtures();
    let init = get(&server, "/cmaf/hevc-hev1-inband.mp4/init_0_v.mp4");
    let has = |fourcc: &[u8]| init.windows(4).any(|w| w == fourcc);
    assert!(has(b"hvc1") && !has(b"hev1"), "written as hvc1");
    // VPS, SPS and PPS, each array complete (the top bit).
    assert_eq!(
        hvcc_arrays(&init),
        [(0x80 | 32, 1), (0x80 | 33, 1), (0x80 | 34, 1)]
    );
    let master = String::from_utf8(get(&server, "/cmaf/hevc-hev1-inband.mp4/master.m3u8")).unwrap();
    assert!(master.contains("CODECS=\"hvc1."), "{master}");
    // A source whose hvcC has them keeps its own arrays as they are.
    let init = get(&server, "/cmaf/hevc-aac.mp4/init_0_v.mp4");
    let source = fs::read(fixture("hevc-aac.mp4")).unwrap();
    assert_eq!(hvcc_arrays(&init), hvcc_arrays(&source));
}

/// CMAF trick play: the master lists an I-frame playlist per video, whose
/// fragments are each segment's first picture (one decodable frame with
/// the init segment, lasting the segment); the MPD a trick-mode
/// AdaptationSet of the same fragments; a static package holds them.
#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn iframe_playlists_and_trick_mode_give_a_picture_per_segment() {
    let root = tempfile::tempdir().unwrap();
    fs::copy(
        fixture("h264-aac-bframes.mp4"),
        root.path().join("film.mp4"),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let text = |path: &str| String::from_utf8(get(&server, path)).unwrap();
    let master = text("/cmaf/film.mp4/master.m3u8");
    let line = master
        .lines()
        .find(|l| l.starts_with("#EXT-X-I-FRAME-STREAM-INF:"))
        .unwrap_or_else(|| panic!("{master}"));
    assert!(
        line.contains("CODECS=\"avc1.") && line.ends_with(",URI=\"iframes_0_v.m3u8\""),
        "{line}"
    );
    let bandwidth: u64 = line["#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=".len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let iframes = text("/cmaf/film.mp4/iframes_0_v.m3u8");
    assert!(
        iframes.contains("#EXT-X-I-FRAMES-ONLY\n#EXT-X-MAP:URI=\"init_0_v.mp4\"\n"),
        "{iframes}"
    );
    let index = text("/cmaf/film.mp4/index_0_v.m3u8");
    assert_eq!(extinfs(&iframes), extinfs(&index));
    let init = get(&server, "/cmaf/film.mp4/init_0_v.mp4");
    let names = segments_of(&iframes);
    assert_eq!(names, ["trick1_0_v.m4s", "trick2_0_v.m4s"]);
    let dir = tempfile::tempdir().unwrap();
    let mut peak = 0;
    for (name, seconds) in names.iter().zip(extinfs(&iframes)) {
        let fragment = get(&server, &format!("/cmaf/film.mp4/{name}"));
        peak = peak.max((fragment.len() as f64 * 8.0 / seconds).round() as u64);
        let file = dir.path().join(format!("{name}.mp4"));
        fs::write(&file, [init.as_slice(), &fragment].concat()).unwrap();
        // One picture, a keyframe ...
        let probe = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
            .args([
                "-show_entries",
                "stream=nb_read_frames,time_base:frame=pict_type",
            ])
            .args(["-of", "json"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(probe.status.success(), "{name}");
        let json: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
        assert_eq!(json["streams"][0]["nb_read_frames"], "1", "{name}: {json}");
        assert_eq!(json["frames"][0]["pict_type"], "I", "{name}: {json}");
        // ... shown for the whole segment: the one duration its trun gives
        // (ISO/IEC 14496-12 8.8.8: count, data offset, then the sample's).
        let trun = fragment.windows(4).position(|w| w == b"trun").unwrap();
        let field = |at: usize| u32::from_be_bytes(fragment[at..at + 4].try_into().unwrap());
        assert_eq!(field(trun + 8), 1, "{name}: one sample");
        let timescale: f64 = json["streams"][0]["time_base"].as_str().unwrap()[2..]
            .parse()
            .unwrap();
        let shown = f64::from(field(trun + 16)) / timescale;
        assert!(
            (shown - seconds).abs() < 0.05,
            "{name}: {shown} s, not {seconds}"
        );
        assert!(decode_errors(&file).is_empty(), "{name}");
    }
    // BANDWIDTH: the peak of the fragments over their durations.
    assert!(
        bandwidth.abs_diff(peak) * 100 <= peak,
        "{bandwidth} vs {peak}"
    );

    let mpd = text("/cmaf/film.mp4/manifest.mpd");
    assert!(
        mpd.contains(
            "<EssentialProperty schemeIdUri=\"http://dashif.org/guidelines/trickmode\" value=\"0\"/>"
        ),
        "{mpd}"
    );
    assert!(mpd.contains("media=\"trick$Number$_0_v.m4s\""), "{mpd}");
    // Not a name of anything else: audio has no trick play.
    assert_eq!(server.get("/cmaf/film.mp4/trick1_0_a.m4s").status, 404);

    let package = tempfile::tempdir().unwrap();
    let out = package.path().join("pkg");
    crate::support::casterpak()
        .arg("package")
        .arg(fixture("h264-aac-bframes.mp4"))
        .arg("--out")
        .arg(&out)
        .args(["--format", "cmaf"])
        .assert()
        .success();
    let packaged = fs::read_to_string(out.join("iframes_0_v.m3u8")).unwrap();
    assert_eq!(packaged, iframes);
    for name in &names {
        assert_eq!(
            fs::read(out.join(name)).unwrap(),
            get(&server, &format!("/cmaf/film.mp4/{name}")),
            "{name}"
        );
    }
}
