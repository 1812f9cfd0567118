//! What MSOD users send besides the names: a master's filters (`?b=`,
//! Akamai's `b-in=`, `b-in-range=` and `__b__=`, `audio-only` and
//! `video-only`), and the predecessor's own names (`index.m3u8`,
//! `segment-<K>.ts`).

use std::path::Path;
use std::process::Command;

use crate::http_client::Server;
use crate::support::{assert_golden, ffprobe_count, fixture};

/// Three renditions far apart in bitrate (video about 100, 400 and 1200
/// kbit/s, with AAC): `film_,lo,mid,hi,.mp4.csmil`.
fn ladder() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (label, rate) in [("lo", "100k"), ("mid", "400k"), ("hi", "1200k")] {
        let made = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
            .arg("testsrc2=s=320x180:r=30:d=6")
            .args(["-f", "lavfi", "-i", "sine=f=440:d=6"])
            .args([
                "-c:v", "libx264", "-g", "60", "-b:v", rate, "-maxrate", rate,
            ])
            .args(["-bufsize", rate, "-c:a", "aac", "-b:a", "64k"])
            .arg(root.path().join(format!("film_{label}.mp4")))
            .status()
            .unwrap();
        assert!(made.success(), "ffmpeg made {label}");
    }
    root
}

/// The master without the variants `dropped` (their STREAM-INF line, URI
/// line and I-frame playlist line), byte for byte.
fn without(master: &str, dropped: &[usize]) -> String {
    let lines: Vec<&str> = master.lines().collect();
    let mut out = String::new();
    let mut skip = false;
    for (i, line) in lines.iter().enumerate() {
        if skip {
            skip = false;
            continue;
        }
        let variant = line.starts_with("#EXT-X-STREAM-INF")
            && dropped
                .iter()
                .any(|n| lines.get(i + 1) == Some(&format!("index_{n}_av.m3u8").as_str()));
        if variant {
            skip = true;
            continue;
        }
        // Its I-frame playlist goes with it.
        let iframes = line.starts_with("#EXT-X-I-FRAME-STREAM-INF")
            && dropped
                .iter()
                .any(|n| line.ends_with(&format!("URI=\"iframes_{n}_av.m3u8\"")));
        if iframes {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg")]
fn b_filters_a_masters_variants_by_bitrate() {
    let root = ladder();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let master = "/i/film_,lo,mid,hi,.mp4.csmil/master.m3u8";
    let all = server.get(master).text();
    let averages: Vec<u64> = all
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF"))
        .filter_map(|l| l.split("AVERAGE-BANDWIDTH=").nth(1))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(averages.len(), 3, "{all}");
    let kbps: Vec<u64> = averages.iter().map(|b| (b + 500) / 1000).collect();
    assert!(
        kbps[0] * 3 / 2 < kbps[1] && kbps[1] * 3 / 2 < kbps[2],
        "{kbps:?}"
    );
    // Cuts halfway between the renditions' measured bitrates.
    let (low, high) = ((kbps[0] + kbps[1]) / 2, (kbps[1] + kbps[2]) / 2);
    let mid_kbps = kbps[1];
    for (query, dropped) in [
        (&*format!("b=0-{low}"), vec![1, 2]),
        (&*format!("b={low}-"), vec![0]),
        (&*format!("b={mid_kbps}"), vec![0, 2]),
        (&*format!("b=0-{low},{mid_kbps}"), vec![2]),
        // Any order, the same filter: the same answer.
        (&*format!("b={mid_kbps},0-{low}"), vec![2]),
        (&*format!("b={high}-{}", kbps[2] * 2), vec![0, 1]),
    ] {
        let reply = server.get(&format!("{master}?{query}"));
        assert_eq!(reply.status, 200, "{query}: {}", reply.text());
        assert_eq!(reply.text(), without(&all, &dropped), "{query}");
    }
    // Nothing left, and nonsense.
    assert_eq!(server.get(&format!("{master}?b=5000-")).status, 404);
    for bad in ["b=abc", "b=700-200", "b=", "b=1,,2"] {
        assert_eq!(server.get(&format!("{master}?{bad}")).status, 400, "{bad}");
    }
    // Other query parameters change nothing.
    assert_eq!(server.get(&format!("{master}?x=1")).text(), all);

    // Akamai's manifest personalization: b-in within 100 kbit/s of a
    // listed rate, b-in-range within ranges; kept by either.
    let near = |k: u64| k.saturating_sub(60);
    for (query, dropped) in [
        (format!("b-in={}", near(kbps[0])), vec![1, 2]),
        (format!("b-in={},{}", near(kbps[0]), near(kbps[2])), vec![1]),
        (format!("b-in-range={low}-{high}"), vec![0, 2]),
        (
            format!("b-in={}&b-in-range={high}-99999", near(kbps[0])),
            vec![1],
        ),
    ] {
        let reply = server.get(&format!("{master}?{query}"));
        assert_eq!(reply.status, 200, "{query}: {}", reply.text());
        assert_eq!(reply.text(), without(&all, &dropped), "{query}");
    }
    assert_eq!(server.get(&format!("{master}?b-in=99999")).status, 404);
    // __b__: the nearest variant (within 100 kbit/s) goes first, the
    // others keep their order; too far from any: the master as it is.
    let first = server
        .get(&format!("{master}?__b__={}", kbps[1] + 40))
        .text();
    assert_eq!(first, moved_first(&all, 1), "{first}");
    let filtered_first = format!("{master}?b-in-range={low}-99999&__b__={}", kbps[2]);
    assert_eq!(
        server.get(&filtered_first).text(),
        moved_first(&without(&all, &[0]), 2)
    );
    let far = kbps[2] + 500;
    assert_eq!(server.get(&format!("{master}?__b__={far}")).text(), all);
    for bad in ["b-in=1-2", "b-in-range=300", "__b__=fast", "audio-only=2"] {
        assert_eq!(server.get(&format!("{master}?{bad}")).status, 400, "{bad}");
    }
}

/// The master with variant `n` (its STREAM-INF and URI lines, and its
/// I-frame playlist's line) moved before the others, byte for byte.
fn moved_first(master: &str, n: usize) -> String {
    let lines: Vec<&str> = master.lines().collect();
    let uri = format!("index_{n}_av.m3u8");
    let at = lines
        .iter()
        .position(|l| *l == uri)
        .expect("variant listed");
    let iframes = format!("URI=\"iframes_{n}_av.m3u8\"");
    let moved = |i: usize| i + 1 == at || i == at || lines[i].ends_with(&iframes);
    let mut out = String::new();
    let mut pending = true;
    let mut pending_iframes = true;
    for (i, line) in lines.iter().enumerate() {
        if pending && line.starts_with("#EXT-X-STREAM-INF") {
            pending = false;
            out += &format!("{}\n{}\n", lines[at - 1], lines[at]);
        }
        if pending_iframes && line.starts_with("#EXT-X-I-FRAME-STREAM-INF") {
            pending_iframes = false;
            if let Some(own) = lines.iter().find(|l| l.ends_with(&iframes)) {
                out += &format!("{own}\n");
            }
        }
        if !moved(i) {
            out += &format!("{line}\n");
        }
    }
    out
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg")]
fn audio_only_and_video_only_masters_list_one_kind_of_track() {
    let root = ladder();
    std::fs::copy(fixture("aac-only.m4a"), root.path().join("radio.m4a")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let master = "/i/film_,lo,mid,hi,.mp4.csmil/master.m3u8";
    let url = |path: &str| format!("http://{}{path}", server.addr);
    let audio = server.get(&format!("{master}?audio-only"));
    assert_eq!(audio.status, 200);
    let audio = audio.text();
    let uris: Vec<&str> = audio.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(uris, ["index_0_a.m3u8", "index_1_a.m3u8", "index_2_a.m3u8"]);
    assert!(
        !audio.contains("RESOLUTION") && !audio.contains("I-FRAME"),
        "{audio}"
    );
    assert!(audio.contains("CODECS=\"mp4a.40.2\""), "{audio}");
    let video = server.get(&format!("{master}?video-only=1")).text();
    let uris: Vec<&str> = video.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(uris, ["index_0_v.m3u8", "index_1_v.m3u8", "index_2_v.m3u8"]);
    assert!(!video.contains("mp4a") && video.contains("RESOLUTION=320x180"));
    assert_eq!(
        video.matches("#EXT-X-I-FRAME-STREAM-INF").count(),
        3,
        "{video}"
    );
    // Audio-only BANDWIDTH is the audio's: far below the AV variants'.
    let bandwidths = |m: &str| -> Vec<u64> {
        m.lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-STREAM-INF:BANDWIDTH="))
            .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
            .collect()
    };
    let av = bandwidths(&server.get(master).text());
    for (a, av) in bandwidths(&audio).iter().zip(&av) {
        assert!(*a < 150_000 && a < av, "audio {a}, av {av}");
    }
    // Players read one kind of stream through each, every frame of it.
    let only_audio = url(&format!("{master}?audio-only"));
    let only_video = url(&format!("{master}?video-only"));
    assert_eq!(ffprobe_count(Path::new(&only_audio), "v", false), None);
    assert_eq!(ffprobe_count(Path::new(&only_video), "a", false), None);
    // ffmpeg's HLS demuxer reads the first variant first: rendition 0.
    // Every video frame decodes; every audio packet is there (the MP4's
    // edit list drops a priming frame from its own decode).
    let lo = root.path().join("film_lo.mp4");
    let count = |path: &Path, select: &str, decode: bool| {
        ffprobe_count(path, select, decode).unwrap_or_else(|| panic!("{path:?} has {select}"))
    };
    assert_eq!(
        count(Path::new(&only_audio), "a:0", false),
        count(&lo, "a:0", false)
    );
    assert_eq!(
        count(Path::new(&only_video), "v:0", true),
        count(&lo, "v:0", true)
    );
    // With a bitrate filter: the renditions it keeps (by their AV
    // bitrates), of one kind.
    let averages: Vec<u64> = server
        .get(master)
        .text()
        .lines()
        .filter_map(|l| l.split("AVERAGE-BANDWIDTH=").nth(1))
        .map(|rest| (rest.split(',').next().unwrap().parse::<u64>().unwrap() + 500) / 1000)
        .collect();
    let top = server
        .get(&format!("{master}?audio-only&b={}-", averages[2] - 1))
        .text();
    let uris: Vec<&str> = top.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(uris, ["index_2_a.m3u8"]);
    // A rendition without the track is left out; none left: 404.
    let mixed = "/i/,film_lo.mp4,radio.m4a,.csmil/master.m3u8";
    let video = server.get(&format!("{mixed}?video-only")).text();
    let uris: Vec<&str> = video.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(uris, ["index_0_v.m3u8"]);
    assert_eq!(
        server.get("/i/radio.m4a/master.m3u8?video-only").status,
        404
    );
    assert_eq!(
        server
            .get(&format!("{master}?audio-only&video-only"))
            .status,
        400
    );
}

#[test]
fn switched_masters_match_the_golden_files() {
    let root = tempfile::tempdir().unwrap();
    for name in ["h264-aac-bframes.mp4", "h264-aac-2lang.mp4"] {
        std::fs::copy(fixture(name), root.path().join(name)).unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/golden");
    for name in ["h264-aac-bframes.mp4", "h264-aac-2lang.mp4"] {
        for switch in ["audio-only", "video-only"] {
            let reply = server.get(&format!("/i/{name}/master.m3u8?{switch}"));
            assert_eq!(reply.status, 200, "{name} {switch}");
            assert_golden(
                &golden.join(name).join(format!("master-{switch}.m3u8")),
                &reply.text(),
            );
        }
    }
}

#[test]
fn the_predecessors_names_answer_rendition_0() {
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("h264-aac-bframes.mp4"), root.path().join("a.mp4")).unwrap();
    std::fs::copy(fixture("aac-only.m4a"), root.path().join("b.m4a")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    for (file, kind) in [("a.mp4", "av"), ("b.m4a", "a")] {
        let index = server.get(&format!("/i/{file}/index.m3u8"));
        assert_eq!(index.status, 200, "{file}");
        assert_eq!(
            index.body,
            server.get(&format!("/i/{file}/index_0_{kind}.m3u8")).body,
            "{file}"
        );
        let segment = server.get(&format!("/i/{file}/segment-2.ts"));
        assert_eq!(segment.status, 200, "{file}");
        assert!(segment.body == server.get(&format!("/i/{file}/segment2_0_{kind}.ts")).body);
    }
    assert_eq!(server.get("/i/a.mp4/segment-0.ts").status, 404);
    assert_eq!(server.get("/i/a.mp4/segment-99.ts").status, 404);
}
