//! What MSOD users send besides the names: a master's bitrate filter
//! (`?b=`), and the predecessor's own names (`index.m3u8`,
//! `segment-<K>.ts`).

use std::process::Command;

use crate::http_client::Server;
use crate::support::fixture;

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
