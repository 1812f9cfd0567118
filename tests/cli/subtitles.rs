//! Sidecar subtitles (`<name>.<lang>.vtt`, `.srt` beside a source) as HLS
//! subtitle renditions and DASH text tracks, and CEA-608 captions in the
//! video declared: read by ffprobe and ffmpeg and shown by players in
//! Chromium.

use std::path::Path;
use std::process::Command;

use crate::browser::play_to;
use crate::http_client::Server;
use crate::support::fixture;

/// The committed sidecars' cues: English (WebVTT: 4 cues, one across the
/// 6 s cut) and German (SRT: 2 good cues of 4), as (start, text).
const ENGLISH: [(f64, &str); 4] = [
    (0.5, "One, at half a second"),
    (2.5, "<i>Two</i>, at the top"),
    (5.5, "Three, across the cut"),
    (8.0, "Four, near the end"),
];
const GERMAN: [(f64, &str); 2] = [(1.0, "Eins"), (7.0, "Drei &amp; <i>vier</i>")];

/// A media root with `film.mp4` (10 s, segments of 6 s and 4 s), its two
/// committed sidecars, a French one that is no WebVTT file, and a sidecar
/// of another film.
fn root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    std::fs::copy(fixture("h264-aac-bframes.mp4"), dir.join("film.mp4")).unwrap();
    for name in ["film.en.vtt", "film.de.srt"] {
        std::fs::copy(fixture(&format!("subtitles/{name}")), dir.join(name)).unwrap();
    }
    std::fs::write(dir.join("film.fr.vtt"), "not a WebVTT file\n").unwrap();
    std::fs::copy(fixture("subtitles/film.en.vtt"), dir.join("film2.en.vtt")).unwrap();
    root
}

/// Each subtitle packet ffprobe reads from `url`: (start s, text).
fn ffprobe_cues(url: &str) -> Vec<(f64, String)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_packets",
            "-show_data",
            "-of",
            "json",
            url,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {url}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let start = p["pts_time"].as_str().unwrap().parse().unwrap();
            (start, hexdump_text(p["data"].as_str().unwrap()))
        })
        .collect()
}

/// The bytes of ffprobe's `-show_data` hexdump, as text.
fn hexdump_text(dump: &str) -> String {
    let mut bytes = Vec::new();
    for line in dump.lines() {
        // "00000000: 4f6e 652c 2061 ...  One, a..."
        let Some((_, rest)) = line.split_once(": ") else {
            continue;
        };
        let hex: String = rest
            .chars()
            .take(40)
            .filter(|c| !c.is_whitespace())
            .collect();
        for pair in hex.as_bytes().chunks(2) {
            bytes.push(u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap());
        }
    }
    String::from_utf8(bytes).unwrap()
}

fn attribute<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let value = &line[at..];
    match value.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => value.split(',').next(),
    }
}

fn extinfs(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .filter(|l| l.starts_with("#EXTINF:"))
        .collect()
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn sidecars_become_subtitle_renditions_that_ffprobe_reads_cue_by_cue() {
    let root = root();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let master = server.get("/i/film.mp4/master.m3u8").text();
    let media: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES"))
        .collect();
    // German and English; the French file is no WebVTT and is left out,
    // film2's sidecar is not film's.
    assert_eq!(media.len(), 2, "{master}");
    let languages: Vec<_> = media.iter().map(|l| attribute(l, "LANGUAGE")).collect();
    assert_eq!(languages, [Some("de"), Some("en")], "{master}");
    for line in &media {
        assert_eq!(attribute(line, "GROUP-ID"), Some("subs"), "{line}");
        assert_eq!(attribute(line, "DEFAULT"), Some("NO"), "{line}");
        assert_eq!(attribute(line, "AUTOSELECT"), Some("YES"), "{line}");
        assert_eq!(attribute(line, "FORCED"), Some("NO"), "{line}");
    }
    for variant in master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
    {
        assert_eq!(attribute(variant, "SUBTITLES"), Some("subs"), "{variant}");
    }

    // Subtitle segments are the media's: the same EXTINFs.
    let index = server.get("/i/film.mp4/index_0_av.m3u8").text();
    for (tag, cues) in [("en", &ENGLISH[..]), ("de", &GERMAN[..])] {
        let uri = attribute(media[usize::from(tag == "en")], "URI").unwrap();
        let playlist = server.get(&format!("/i/film.mp4/{uri}")).text();
        assert_eq!(extinfs(&playlist), extinfs(&index), "{tag}: {playlist}");
        // ffprobe reads each cue once, at its time (a cue across the cut
        // is in both segments).
        let url = format!("http://{}/i/film.mp4/{uri}", server.addr);
        let got = ffprobe_cues(&url);
        let want: Vec<(f64, String)> = cues.iter().map(|(t, s)| (*t, s.to_string())).collect();
        assert_eq!(got, want, "{tag}");
    }
    let second = server.get("/i/film.mp4/subtitles2_en.vtt");
    assert_eq!(
        second.header("content-type"),
        Some("text/vtt; charset=utf-8")
    );
    assert!(second.text().contains("00:00:05.500 --> 00:00:06.500"));

    // X-TIMESTAMP-MAP ties cue time 0 to the MPEG-TS time of the source's
    // time 0: the PTS of its first video frame (at 0 in this file).
    let first_pts = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .args(["packet=pts", "-of", "csv=p=0"])
        .arg(format!(
            "http://{}/i/film.mp4/segment1_0_av.ts",
            server.addr
        ))
        .output()
        .unwrap();
    let min_pts = String::from_utf8(first_pts.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<i64>().ok())
        .min()
        .unwrap();
    for k in 1..=2 {
        let segment = server
            .get(&format!("/i/film.mp4/subtitles{k}_de.vtt"))
            .text();
        assert_eq!(
            segment.lines().nth(1),
            Some(format!("X-TIMESTAMP-MAP=MPEGTS:{min_pts},LOCAL:00:00:00.000").as_str()),
            "{segment}"
        );
    }

    // The French file is there, and no WebVTT; other names are not there.
    assert_eq!(server.get("/i/film.mp4/subtitles_fr.m3u8").status, 422);
    for missing in ["subtitles_it.m3u8", "subtitles3_en.vtt"] {
        assert_eq!(
            server.get(&format!("/i/film.mp4/{missing}")).status,
            404,
            "{missing}"
        );
    }
    assert_eq!(server.get("/i/film.mp4/subtitles0_en.vtt").status, 404);
}

#[test]
fn a_csmil_set_takes_the_sidecars_of_its_prefix_and_new_or_changed_ones_show() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    for label in ["lo", "hi"] {
        std::fs::copy(
            fixture("h264-aac-bframes.mp4"),
            dir.join(format!("film_{label}.mp4")),
        )
        .unwrap();
    }
    std::fs::copy(fixture("subtitles/film.en.vtt"), dir.join("film.en.vtt")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let path = "/i/film_,lo,hi,.mp4.csmil/master.m3u8";
    let count = |master: &str| master.matches("TYPE=SUBTITLES").count();
    let master = server.get(path).text();
    assert_eq!(count(&master), 1, "{master}");
    assert_eq!(master.matches(",SUBTITLES=\"subs\"").count(), 2, "{master}");
    let segment = server.get("/i/film_,lo,hi,.mp4.csmil/subtitles1_en.vtt");
    assert_eq!(segment.status, 200);

    // A sidecar added is listed at once; one replaced is served anew.
    std::fs::write(
        dir.join("film.nl.forced.srt"),
        "1\n00:00:01,000 --> 00:00:02,000\nHallo\n",
    )
    .unwrap();
    let master = server.get(path).text();
    assert_eq!(count(&master), 2, "{master}");
    assert!(
        master.contains("NAME=\"Dutch (forced)\",LANGUAGE=\"nl\",DEFAULT=NO,AUTOSELECT=YES,FORCED=YES,URI=\"subtitles_nl-forced.m3u8\""),
        "{master}"
    );
    std::fs::write(
        dir.join("film.en.vtt"),
        "WEBVTT\n\n00:01.000 --> 00:02.000\nReplaced\n",
    )
    .unwrap();
    let replaced = server
        .get("/i/film_,lo,hi,.mp4.csmil/subtitles1_en.vtt")
        .text();
    assert!(replaced.contains("Replaced"), "{replaced}");
    // An SRT without cues that can be read still makes a track, empty.
    std::fs::write(dir.join("film.sv.srt"), "garbage\n\nmore garbage\n").unwrap();
    let empty = server.get("/i/film_,lo,hi,.mp4.csmil/subtitles1_sv.vtt");
    assert_eq!(empty.status, 200);
    assert!(!empty.text().contains("-->"), "{}", empty.text());
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn dash_gets_a_text_adaptation_set_per_language_and_fmp4_hls_the_renditions() {
    let root = root();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let mpd = server.get("/cmaf/film.mp4/manifest.mpd").text();
    for tag in ["de", "en"] {
        assert!(
            mpd.contains(&format!(
                "contentType=\"text\" mimeType=\"text/vtt\" lang=\"{tag}\">\n      \
                 <Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"subtitle\"/>"
            )),
            "{mpd}"
        );
        // The whole file as the one segment of the 10.023-s Period.
        assert!(
            mpd.contains(&format!(
                "<SegmentTemplate timescale=\"1000\" duration=\"10024\" \
                 media=\"subtitles_{tag}.vtt\" startNumber=\"1\"/>"
            )),
            "{mpd}"
        );
    }
    assert!(mpd.contains("mediaPresentationDuration=\"PT10.023S\""));
    // The whole file, from the Period's start (the first segment's).
    let url = format!("http://{}/cmaf/film.mp4/subtitles_de.vtt", server.addr);
    let cues = ffprobe_cues(&url);
    assert_eq!(cues.len(), 2, "{cues:?}");
    let shift = cues[0].0 - GERMAN[0].0;
    assert!((0.0..0.1).contains(&shift), "{cues:?}");
    assert!((cues[1].0 - GERMAN[1].0 - shift).abs() < 0.002, "{cues:?}");

    let master = server.get("/cmaf/film.mp4/master.m3u8").text();
    assert_eq!(master.matches("TYPE=SUBTITLES").count(), 2, "{master}");
    assert!(master.contains(",SUBTITLES=\"subs\""), "{master}");
    // Cut where the video is cut (the first segment starts with the
    // earliest track, here audio, a frame before the video).
    let playlist = server.get("/cmaf/film.mp4/subtitles_en.m3u8").text();
    let index = server.get("/cmaf/film.mp4/index_0_v.m3u8").text();
    let seconds = |p: &str| -> Vec<f64> {
        extinfs(p)
            .iter()
            .map(|l| l["#EXTINF:".len()..].trim_end_matches(',').parse().unwrap())
            .collect()
    };
    let (subtitles, video) = (seconds(&playlist), seconds(&index));
    assert_eq!(subtitles.len(), video.len(), "{playlist}");
    assert!((subtitles[0] - video[0]).abs() < 0.05, "{playlist}");
    assert_eq!(subtitles[1..], video[1..], "{playlist}");
}

/// The cues of the `language` text track a player showed, as (start,
/// text), with the first one's lead over `expected` subtracted from all:
/// that lead is where the source's time 0 is on the player's timeline.
fn shown_cues(
    report: &serde_json::Value,
    language: &str,
    expected: &[(f64, &str)],
) -> Vec<(f64, String)> {
    let showing = report["text"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["language"] == language && t["mode"] == "showing");
    assert!(showing, "no {language} track showing: {report}");
    let cues: Vec<(f64, String)> = report["cues"][language]
        .as_array()
        .unwrap_or_else(|| panic!("no {language} cues: {report}"))
        .iter()
        .map(|c| {
            (
                c["start"].as_f64().unwrap(),
                c["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(!cues.is_empty(), "{report}");
    // Players put the source's time 0 a frame or so after their own.
    let lead = cues[0].0 - expected[0].0;
    assert!((0.0..0.1).contains(&lead), "lead {lead}: {cues:?}");
    cues.into_iter()
        .map(|(t, text)| (((t - lead) * 1000.0).round() / 1000.0, text))
        .collect()
}

#[test]
#[cfg_attr(
    any(casterpak_no_browser, casterpak_no_ffmpeg),
    ignore = "needs chromium, node and tests/browser/node_modules (npm ci); needs ffmpeg"
)]
fn players_show_the_cues_at_their_times() {
    let root = root();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let base = format!("http://{}", server.addr);
    let want = |cues: &[(f64, &str)]| -> Vec<(f64, String)> {
        cues.iter().map(|(t, s)| (*t, s.to_string())).collect()
    };
    let english = want(&ENGLISH);
    for (player, url) in [
        ("hls", format!("{base}/i/film.mp4/master.m3u8")),
        ("hls", format!("{base}/cmaf/film.mp4/master.m3u8")),
        ("shaka", format!("{base}/i/film.mp4/master.m3u8")),
    ] {
        let report = play_to(player, &url, 8, &["--subtitles", "en"]);
        assert_eq!(
            shown_cues(&report, "en", &ENGLISH),
            english,
            "{player} {url}"
        );
    }
    let report = play_to(
        "dashjs",
        &format!("{base}/cmaf/film.mp4/manifest.mpd"),
        8,
        &["--subtitles", "de"],
    );
    assert_eq!(shown_cues(&report, "de", &GERMAN), want(&GERMAN));
}

/// The tx3g tracks of h264-aac-tx3g.mp4 (tests/fixtures/make.sh), as
/// ffprobe reads WebVTT cues: (start, text).
const TX3G_ENGLISH: [(f64, &str); 5] = [
    (1.0, "One"),
    (3.0, "Two &amp; 3 &lt; 4"),
    (5.5, "Across the cut"),
    (7.0, "Four"),
    (8.0, "Five\non two lines"),
];
const TX3G_FRENCH: [(f64, &str); 2] = [(2.0, "Un"), (8.0, "Deux")];

/// Subtitle tracks inside the file (tx3g) are renditions like sidecars:
/// listed with their languages, cut along the media segments, read by
/// ffprobe cue by cue; a sidecar of the same language replaces the file's
/// track.
#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn subtitle_tracks_in_the_file_become_renditions() {
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("h264-aac-tx3g.mp4"), root.path().join("film.mp4")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let master = server.get("/i/film.mp4/master.m3u8").text();
    let media: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES"))
        .collect();
    let languages: Vec<_> = media.iter().map(|l| attribute(l, "LANGUAGE")).collect();
    // ISO 639-2 in the file (eng, fra), BCP 47 in the master.
    assert_eq!(languages, [Some("en"), Some("fr")], "{master}");
    assert_eq!(attribute(media[0], "NAME"), Some("English"), "{master}");
    let index = server.get("/i/film.mp4/index_0_av.m3u8").text();
    for (line, cues) in media.iter().zip([&TX3G_ENGLISH[..], &TX3G_FRENCH[..]]) {
        let uri = attribute(line, "URI").unwrap();
        let playlist = server.get(&format!("/i/film.mp4/{uri}")).text();
        assert_eq!(extinfs(&playlist), extinfs(&index), "{uri}: {playlist}");
        let got = ffprobe_cues(&format!("http://{}/i/film.mp4/{uri}", server.addr));
        let want: Vec<(f64, String)> = cues.iter().map(|(t, s)| (*t, s.to_string())).collect();
        assert_eq!(got, want, "{uri}");
    }
    // DASH: a text AdaptationSet per track, the whole track as one file.
    let mpd = server.get("/cmaf/film.mp4/manifest.mpd").text();
    for tag in ["en", "fr"] {
        assert!(
            mpd.contains(&format!(
                "media=\"subtitles_{tag}.vtt\" startNumber=\"1\"/>"
            )),
            "{mpd}"
        );
    }
    let url = format!("http://{}/cmaf/film.mp4/subtitles_fr.vtt", server.addr);
    assert_eq!(ffprobe_cues(&url).len(), TX3G_FRENCH.len());

    // A sidecar in French takes the place of the file's French track.
    std::fs::write(
        root.path().join("film.fr.vtt"),
        "WEBVTT\n\n00:00:04.000 --> 00:00:05.000\nDu fichier à côté\n",
    )
    .unwrap();
    let sidecar_root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    for name in ["film.mp4", "film.fr.vtt"] {
        std::fs::copy(root.path().join(name), sidecar_root.path().join(name)).unwrap();
    }
    let server = Server::start(sidecar_root.path(), cache.path(), &[]);
    let master = server.get("/i/film.mp4/master.m3u8").text();
    assert_eq!(master.matches("TYPE=SUBTITLES").count(), 2, "{master}");
    let url = format!("http://{}/i/film.mp4/subtitles_fr.m3u8", server.addr);
    let got = ffprobe_cues(&url);
    assert_eq!(got, [(4.0, "Du fichier à côté".to_string())]);
}

/// Text tracks whose samples are all in movie fragments (fMP4, the moov's
/// tables empty) are renditions too: each cue starts where ffprobe finds
/// its sample in the file, with the text of the track it was copied from.
#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn subtitle_tracks_in_fragments_become_renditions() {
    let root = tempfile::tempdir().unwrap();
    let source = fixture("h264-aac-tx3g-fragmented.mp4");
    std::fs::copy(&source, root.path().join("film.mp4")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let master = server.get("/i/film.mp4/master.m3u8").text();
    assert_eq!(
        master.matches("#EXT-X-MEDIA:TYPE=SUBTITLES").count(),
        2,
        "{master}"
    );
    for (n, (tag, cues)) in [("en", &TX3G_ENGLISH[..]), ("fr", &TX3G_FRENCH[..])]
        .into_iter()
        .enumerate()
    {
        assert!(
            master.contains(&format!("URI=\"subtitles_{tag}.m3u8\"")),
            "{master}"
        );
        let url = format!("http://{}/i/film.mp4/subtitles_{tag}.m3u8", server.addr);
        let got = ffprobe_cues(&url);
        let texts: Vec<&str> = got.iter().map(|(_, text)| text.as_str()).collect();
        let want: Vec<&str> = cues.iter().map(|(_, text)| *text).collect();
        assert_eq!(texts, want, "{tag}");
        let starts = sample_starts(&source, n);
        assert_eq!(starts.len(), got.len(), "{tag}: {starts:?}");
        for ((got, _), start) in got.iter().zip(&starts) {
            assert!((got - start).abs() < 0.001, "{tag}: {got} for {start}");
        }
    }
}

/// The times of the samples with text (more than the 2-byte length) of
/// subtitle stream `n` of `file`, as ffprobe reads them.
fn sample_starts(file: &Path, n: usize) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", &format!("s:{n}")])
        .args(["-show_entries", "packet=pts_time,size", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {}", file.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (pts, size) = l.split_once(',')?;
            (size.parse::<u32>().ok()? > 2).then(|| pts.parse().unwrap())
        })
        .collect()
}

/// hls.js shows the cues of a tx3g track at their times.
#[test]
#[cfg_attr(
    any(casterpak_no_browser, casterpak_no_ffmpeg),
    ignore = "needs chromium, node and tests/browser/node_modules (npm ci); needs ffmpeg"
)]
fn hls_js_shows_the_cues_of_a_track_in_the_file() {
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("h264-aac-tx3g.mp4"), root.path().join("film.mp4")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let url = format!("http://{}/i/film.mp4/master.m3u8", server.addr);
    let report = play_to("hls", &url, 8, &["--subtitles", "en"]);
    // (A cue's text as its WebVTT payload has it: entities not decoded.)
    let want: Vec<(f64, String)> = TX3G_ENGLISH
        .iter()
        .map(|(t, s)| (*t, s.to_string()))
        .collect();
    let shown = shown_cues(&report, "en", &TX3G_ENGLISH);
    assert_eq!(shown, want);
}

/// The captions ffmpeg decodes from `input` (its `subcc` output: CEA-608
/// in the video's SEI), as SRT.
fn ffmpeg_captions(input: &str) -> String {
    let escaped = input.replace(':', "\\\\:");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("movie={escaped}[out0+subcc]"))
        .args(["-map", "0:1", "-f", "srt", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg subcc {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg")]
fn captions_in_the_video_are_declared_only_where_they_are_and_kept() {
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("h264-cea608.mp4"), root.path().join("film_cc.mp4")).unwrap();
    std::fs::copy(
        fixture("h264-aac-bframes.mp4"),
        root.path().join("film_plain.mp4"),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);

    let master = server.get("/i/film_cc.mp4/master.m3u8").text();
    assert!(
        master.contains(
            "#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"CC1\",INSTREAM-ID=\"CC1\",\
             DEFAULT=NO,AUTOSELECT=YES\n"
        ),
        "{master}"
    );
    let variant = master
        .lines()
        .find(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .unwrap();
    assert_eq!(
        attribute(variant, "CLOSED-CAPTIONS"),
        Some("cc"),
        "{master}"
    );
    let plain = server.get("/i/film_plain.mp4/master.m3u8").text();
    assert!(!plain.contains("CLOSED-CAPTIONS"), "{plain}");
    // In a set, only the variant that carries them names the group.
    let set = server
        .get("/i/film_,cc,plain,.mp4.csmil/master.m3u8")
        .text();
    let named: Vec<bool> = set
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .map(|l| l.contains("CLOSED-CAPTIONS=\"cc\""))
        .collect();
    assert_eq!(named, [true, false], "{set}");
    assert_eq!(set.matches("TYPE=CLOSED-CAPTIONS").count(), 1, "{set}");

    let mpd = server.get("/cmaf/film_cc.mp4/manifest.mpd").text();
    assert!(
        mpd.contains(
            "<Accessibility schemeIdUri=\"urn:scte:dash:cc:cea-608:2015\" value=\"CC1=und\"/>"
        ),
        "{mpd}"
    );
    assert!(!server
        .get("/cmaf/film_plain.mp4/manifest.mpd")
        .text()
        .contains("Accessibility"));
    let cmaf_master = server.get("/cmaf/film_cc.mp4/master.m3u8").text();
    assert!(
        cmaf_master.contains(",CLOSED-CAPTIONS=\"cc\""),
        "{cmaf_master}"
    );

    // The captions go through as they are: ffmpeg reads the same cues
    // from the stream as from the file.
    let source = ffmpeg_captions(fixture("h264-cea608.mp4").to_str().unwrap());
    assert_eq!(source.matches("HELLO").count(), 4, "{source}");
    for stream in [
        "/i/film_cc.mp4/master.m3u8",
        "/cmaf/film_cc.mp4/master.m3u8",
    ] {
        let url = format!("http://{}{stream}", server.addr);
        assert_eq!(ffmpeg_captions(&url), source, "{stream}");
    }
}

#[test]
#[cfg_attr(
    casterpak_no_browser,
    ignore = "needs chromium, node and tests/browser/node_modules (npm ci)"
)]
fn hls_js_shows_the_captions_of_the_video() {
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("h264-cea608.mp4"), root.path().join("cc.mp4")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), cache.path(), &[]);
    let url = format!("http://{}/i/cc.mp4/master.m3u8", server.addr);
    // hls.js names the CC1 track's language "en" unless told otherwise.
    let report = play_to("hls", &url, 3, &["--subtitles", "en"]);
    let cues: Vec<(f64, f64, &str)> = report["cues"]["en"]
        .as_array()
        .unwrap_or_else(|| panic!("no captions: {report}"))
        .iter()
        .map(|c| {
            (
                c["start"].as_f64().unwrap(),
                c["end"].as_f64().unwrap(),
                c["text"].as_str().unwrap(),
            )
        })
        .collect();
    // A pop-on "HELLO" shown from 7 frames into each second to 24 (EOC
    // and EDM in the fixture).
    assert!(cues.len() >= 3, "{report}");
    for (k, (start, end, text)) in cues.iter().enumerate() {
        assert_eq!(*text, "HELLO", "{report}");
        assert!((start - (k as f64 + 7.0 / 30.0)).abs() < 0.01, "{report}");
        assert!((end - (k as f64 + 24.0 / 30.0)).abs() < 0.01, "{report}");
    }
}
