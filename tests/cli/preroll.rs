//! Pre-rolls by country (`[preroll]`): media playlists start with the
//! pre-roll's segments, then a discontinuity, then the content; ffmpeg
//! decodes across it and hls.js plays through it.

use std::path::Path;
use std::process::Command;

use crate::browser::play_to;
use crate::http_client::{request, Server};
use crate::support::fixture;

/// A 4 s pre-roll of one colour, with a tone, in H.264 and AAC like the
/// content (120 frames).
pub fn make_ad(path: &Path, colour: &str) {
    make_ad_sized(path, colour, "320x180", "50k");
}

/// As [`make_ad`], of picture `size` at video bitrate `rate`.
fn make_ad_sized(path: &Path, colour: &str, size: &str, rate: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!(
            "color=c={colour}:s={size}:r=30:d=4,noise=alls=40:allf=t"
        ))
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=880:sample_rate=44100:duration=4",
        ])
        .args([
            "-c:v",
            "libx264",
            "-g",
            "60",
            "-sc_threshold",
            "0",
            "-b:v",
            rate,
            "-maxrate",
            rate,
            "-bufsize",
            rate,
        ])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", "44100", "-b:a", "48k",
        ])
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "ffmpeg made {}", path.display());
}

/// A media root with `film.mp4` (10 s, 300 frames), `trailers/t.mp4`, and
/// pre-rolls `ads/us.mp4` (red) and `ads/gb.mp4` (blue).
pub fn root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    std::fs::copy(fixture("h264-aac-bframes.mp4"), dir.join("film.mp4")).unwrap();
    std::fs::create_dir_all(dir.join("trailers")).unwrap();
    std::fs::copy(fixture("h264-aac-bframes.mp4"), dir.join("trailers/t.mp4")).unwrap();
    make_ad(&dir.join("ads/us.mp4"), "red");
    make_ad(&dir.join("ads/gb.mp4"), "blue");
    root
}

/// The configuration of the example, through the environment.
pub const PREROLL_ENV: [(&str, &str); 3] = [
    ("CASTERPAK_PREROLL_DEFAULT", "ads/us.mp4"),
    (
        "CASTERPAK_PREROLL_COUNTRIES",
        "{ gb = \"ads/gb.mp4\", de = \"ads/gb.mp4\" }",
    ),
    ("CASTERPAK_PREROLL_OFF_PATHS", "[\"trailers/\"]"),
];

fn start(root: &Path, cache: &Path, more: &[(&str, &str)]) -> Server {
    let mut env: Vec<(&str, &str)> = PREROLL_ENV.to_vec();
    env.extend_from_slice(more);
    Server::start_with_env(root, cache, &[], &env)
}

/// The key the token tests sign with.
const TOKENS_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// As [`start`], with tokens signed with [`TOKENS_KEY`] and `setting`.
fn start_with_tokens(
    root: &tempfile::TempDir,
    cache: &tempfile::TempDir,
    setting: (&str, &str),
) -> Server {
    let env = [("CASTERPAK_TOKENS_KEY", TOKENS_KEY), setting];
    start(root.path(), cache.path(), &env)
}

fn playlist_for(server: &Server, path: &str, country: Option<&str>) -> (String, Option<String>) {
    let headers: Vec<(&str, &str)> = country.map(|c| ("X-Country", c)).into_iter().collect();
    let reply = request(&server.addr, "GET", path, &headers);
    assert_eq!(reply.status, 200, "{path} {country:?}: {}", reply.text());
    (reply.text(), reply.header("vary").map(str::to_string))
}

/// Decoded video frames of the stream at `url` (ffprobe), told `country`.
fn frames(url: &str, country: &str) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-headers"])
        .arg(format!("X-Country: {country}\r\n"))
        .args(["-select_streams", "v", "-count_frames", "-show_entries"])
        .args(["stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {url}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no frame count for {url}"))
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn each_country_gets_its_pre_roll_before_the_content_and_ffmpeg_decodes_across() {
    let root = root();
    let cache = tempfile::tempdir().unwrap();
    let server = start(root.path(), cache.path(), &[]);
    let path = "/i/film.mp4/index_0_av.m3u8";
    let (gb, vary) = playlist_for(&server, path, Some("GB"));
    assert_eq!(vary.as_deref(), Some("X-Country"));
    let lines: Vec<&str> = gb.lines().collect();
    let ad = lines
        .iter()
        .position(|l| *l == "/i/ads/gb.mp4/segment1_0_av.ts");
    let cut = lines.iter().position(|l| *l == "#EXT-X-DISCONTINUITY");
    let content = lines.iter().position(|l| *l == "segment1_0_av.ts");
    assert!(ad < cut && cut < content && ad.is_some(), "{gb}");
    assert_eq!(gb.matches("#EXT-X-DISCONTINUITY").count(), 1, "{gb}");
    // Germany shares Britain's pre-roll (and its playlist); France and a
    // viewer of no known country get the default.
    assert_eq!(playlist_for(&server, path, Some("de")).0, gb);
    for other in [Some("fr"), Some("xx1"), None] {
        let (text, _) = playlist_for(&server, path, other);
        assert!(
            text.contains("\n/i/ads/us.mp4/segment1_0_av.ts\n"),
            "{other:?}: {text}"
        );
    }
    // Off for a request, for a path, and for the pre-rolls themselves;
    // masters are the same for all, and say so.
    for (off, country) in [
        (format!("{path}?preroll=0"), Some("gb")),
        ("/i/trailers/t.mp4/index_0_av.m3u8".to_string(), Some("gb")),
        ("/i/ads/us.mp4/index_0_av.m3u8".to_string(), None),
    ] {
        let (text, vary) = playlist_for(&server, &off, country);
        assert!(
            !text.contains("DISCONTINUITY") && !text.contains("/ads/"),
            "{off}: {text}"
        );
        assert_eq!(vary, None, "{off}");
    }
    let (_, vary) = playlist_for(&server, "/i/film.mp4/master.m3u8", Some("gb"));
    assert_eq!(vary, None);
    // A CDN is told what to fetch next only where it is the content's
    // first segment for everyone.
    let link = |path: &str| {
        let reply = request(&server.addr, "GET", path, &[("X-Country", "gb")]);
        reply.header("link").map(str::to_string)
    };
    assert_eq!(link(path), None);
    let off = format!("{path}?preroll=0");
    assert!(
        link(&off).is_some_and(|l| l.contains("segment1_0_av.ts")),
        "{:?}",
        link(&off)
    );

    // Every frame of both, decoded one after the other.
    let base = format!("http://{}", server.addr);
    let content_frames = frames(&format!("{base}{path}?preroll=0"), "gb");
    let ad_frames = frames(&format!("{base}/i/ads/gb.mp4/index_0_av.m3u8"), "gb");
    assert_eq!((content_frames, ad_frames), (300, 120));
    assert_eq!(frames(&format!("{base}{path}"), "gb"), 420);
    let decoded = Command::new("ffmpeg")
        .args(["-v", "error", "-headers", "X-Country: gb\r\n", "-i"])
        .arg(format!("{base}{path}"))
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(decoded.status.success());
    let errors = String::from_utf8_lossy(&decoded.stderr);
    assert!(
        !errors.contains("decode") && !errors.contains("corrupt"),
        "{errors}"
    );
}

/// The response to a GET of `url` sent from the local address `from`
/// (curl `--interface`), with `headers`: (lower-case head, body).
fn get_from(from: &str, url: &str, headers: &[&str]) -> (String, String) {
    let mut curl = Command::new("curl");
    curl.args(["-s", "-D", "-", "--interface", from, url]);
    for h in headers {
        curl.args(["-H", h]);
    }
    let out = curl.output().unwrap();
    assert!(out.status.success(), "curl from {from} {url}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_string())
}

/// With a GeoIP database, a request without the country header is placed
/// by its address (behind trusted proxies, by the address they forward),
/// and its playlist is its own (`private`).
#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn without_the_header_the_country_comes_from_the_address() {
    let root = root();
    let cache = tempfile::tempdir().unwrap();
    let db = fixture("geoip/country.mmdb");
    let server = Server::start_with_env(
        root.path(),
        cache.path(),
        &[],
        &[
            ("CASTERPAK_PREROLL_DEFAULT", "ads/us.mp4"),
            ("CASTERPAK_PREROLL_COUNTRIES", "{ nl = \"ads/gb.mp4\" }"),
            ("CASTERPAK_PREROLL_GEOIP_DB", db.to_str().unwrap()),
            ("CASTERPAK_PREROLL_TRUSTED_PROXIES", "[\"127.0.0.3\"]"),
        ],
    );
    let url = format!("http://{}/i/film.mp4/index_0_av.m3u8", server.addr);
    // tests/fixtures/geoip/make.py: 127.0.0.2 is in the Netherlands.
    let dutch = "\n/i/ads/gb.mp4/segment1_0_av.ts\n";
    let other = "\n/i/ads/us.mp4/segment1_0_av.ts\n";
    let (head, body) = get_from("127.0.0.2", &url, &[]);
    assert!(body.contains(dutch), "{body}");
    assert!(head.contains("\r\ncache-control: private"), "{head}");
    assert!(head.contains("\r\nvary: x-country"), "{head}");
    let (head, body) = get_from("127.0.0.1", &url, &[]);
    assert!(body.contains(other), "{body}");
    assert!(head.contains("\r\ncache-control: private"), "{head}");
    // A forwarded address counts from a trusted proxy only.
    let forwarded = ["X-Forwarded-For: 127.0.0.2"];
    assert!(get_from("127.0.0.1", &url, &forwarded).1.contains(other));
    assert!(get_from("127.0.0.3", &url, &forwarded).1.contains(dutch));
    // The header, when there is one, says it: then shared caches may keep
    // the playlist by it.
    let (head, body) = get_from("127.0.0.2", &url, &["X-Country: US"]);
    assert!(body.contains(other), "{body}");
    assert!(head.contains("\r\ncache-control: public"), "{head}");
}

/// With signed URLs required, playlists carry the viewer's token to the
/// pre-roll's segments, which play when the token's acl covers them (as
/// README.md says to sign it) and are refused when it does not.
#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn a_token_whose_acl_covers_the_pre_rolls_plays_them() {
    let root = root();
    let cache = tempfile::tempdir().unwrap();
    let server = start_with_tokens(&root, &cache, ("CASTERPAK_TOKENS_REQUIRED", "true"));
    let token = |acl: &str| crate::support::signed_for(TOKENS_KEY, acl);
    let status_of_the_first_ad_segment = |acl: &str| {
        let path = format!("/i/film.mp4/index_0_av.m3u8?hdnea={}", token(acl));
        let (playlist, _) = playlist_for(&server, &path, Some("gb"));
        let ad = playlist
            .lines()
            .find(|l| l.starts_with("/i/ads/gb.mp4/segment1_0_av.ts?hdnea="))
            .unwrap_or_else(|| panic!("{playlist}"));
        request(&server.addr, "GET", ad, &[]).status
    };
    assert_eq!(
        status_of_the_first_ad_segment("/i/film.mp4/*!/i/ads/*"),
        200
    );
    assert_eq!(status_of_the_first_ad_segment("/i/film.mp4/*"), 403);
}

/// With `preroll.param_signed`, `?preroll=0` turns the pre-roll off only
/// when the request's token signs it (`casterpak token --data preroll=0`):
/// added to a URL whose token does not, or without a token, it is ignored.
#[test]
fn preroll_off_counts_only_when_the_token_signs_it() {
    let root = root();
    let cache = tempfile::tempdir().unwrap();
    let server = start_with_tokens(&root, &cache, ("CASTERPAK_PREROLL_PARAM_SIGNED", "true"));
    let has_preroll = |query: &str| {
        let path = format!("/i/film.mp4/index_0_av.m3u8{query}");
        let (playlist, _) = playlist_for(&server, &path, Some("gb"));
        playlist.contains("/i/ads/gb.mp4/")
    };
    let signed = crate::support::signed_with_data(TOKENS_KEY, "/i/*", "preroll=0");
    let plain = crate::support::signed_for(TOKENS_KEY, "/i/*");
    assert!(has_preroll(""));
    assert!(has_preroll("?preroll=0"), "no token: ignored");
    assert!(
        has_preroll(&format!("?preroll=0&hdnea={plain}")),
        "unsigned: ignored"
    );
    assert!(
        !has_preroll(&format!("?preroll=0&hdnea={signed}")),
        "signed: off"
    );
    // The signed token alone does not turn it off: the URL asks for it.
    assert!(has_preroll(&format!("?hdnea={signed}")));
    // Signed data cannot be edited into a token.
    let forged = plain.replace("~hmac=", "~data=preroll=0~hmac=");
    assert!(
        has_preroll(&format!("?preroll=0&hdnea={forged}")),
        "forged: ignored"
    );
}

/// A BANDWIDTH attribute of a master's line.
fn bandwidth(line: &str) -> u64 {
    let at = line.find("BANDWIDTH=").unwrap() + "BANDWIDTH=".len();
    line[at..].split(',').next().unwrap().parse().unwrap()
}

/// The BANDWIDTH of each variant of the master at `path`.
fn bandwidths(server: &Server, path: &str) -> Vec<u64> {
    let (master, _) = playlist_for(server, path, None);
    master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .map(bandwidth)
        .collect()
}

/// A pre-roll named as a csmil set gives each content rendition the one
/// that matches it (height, then bandwidth), and masters' BANDWIDTH
/// covers the pre-roll's segments too.
#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn a_set_of_pre_roll_renditions_is_matched_to_each_rendition() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    std::fs::copy(fixture("h264-aac-bframes.mp4"), dir.join("film_180.mp4")).unwrap();
    let scaled = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-i"])
        .arg(fixture("h264-aac-bframes.mp4"))
        .args(["-vf", "scale=640:360", "-c:v", "libx264", "-g", "60"])
        .args(["-sc_threshold", "0", "-b:v", "150k", "-c:a", "copy"])
        .arg(dir.join("film_360.mp4"))
        .status()
        .unwrap();
    assert!(scaled.success());
    make_ad_sized(&dir.join("ads/gb_180.mp4"), "blue", "320x180", "60k");
    make_ad_sized(&dir.join("ads/gb_360.mp4"), "blue", "640x360", "1500k");
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        dir,
        cache.path(),
        &[],
        &[(
            "CASTERPAK_PREROLL_COUNTRIES",
            "{ gb = \"ads/gb_,180,360,.mp4.csmil\" }",
        )],
    );
    let set = "/i/film_,180,360,.mp4.csmil";
    for (n, ad) in [(0, "gb_180"), (1, "gb_360")] {
        let (text, _) = playlist_for(&server, &format!("{set}/index_{n}_av.m3u8"), Some("gb"));
        assert!(
            text.contains(&format!("\n/i/ads/{ad}.mp4/segment1_0_av.ts\n")),
            "{n}: {text}"
        );
    }
    // The 360p pre-roll's peak is above the 360p content's: the variant
    // says the pre-roll's.
    let ads: Vec<u64> = ["gb_180", "gb_360"]
        .iter()
        .map(|ad| bandwidths(&server, &format!("/i/ads/{ad}.mp4/master.m3u8"))[0])
        .collect();
    let plain = tempfile::tempdir().unwrap();
    let content = bandwidths(
        &Server::start(dir, plain.path(), &[]),
        &format!("{set}/master.m3u8"),
    );
    assert!(ads[1] > content[1], "{ads:?} {content:?}");
    let with_prerolls = bandwidths(&server, &format!("{set}/master.m3u8"));
    assert_eq!(
        with_prerolls,
        [content[0].max(ads[0]), ads[1]],
        "{ads:?} {content:?}"
    );
    // The same in fMP4 masters: the variant covers the pre-roll's
    // fragments (its own master adds its video and audio).
    let cmaf = bandwidths(&server, &format!("/cmaf{}/master.m3u8", &set[2..]));
    let cmaf_plain = bandwidths(
        &Server::start(dir, tempfile::tempdir().unwrap().path(), &[]),
        &format!("/cmaf{}/master.m3u8", &set[2..]),
    );
    let ad_cmaf = bandwidths(&server, "/cmaf/ads/gb_360.mp4/master.m3u8")[0];
    assert!(
        cmaf[1] >= ad_cmaf && ad_cmaf > cmaf_plain[1],
        "{cmaf:?} {cmaf_plain:?} {ad_cmaf}"
    );
    let base = format!("http://{}", server.addr);
    assert_eq!(frames(&format!("{base}{set}/index_1_av.m3u8"), "gb"), 420);
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg and ffprobe")]
fn encrypted_content_after_a_clear_pre_roll_keeps_its_ivs() {
    let root = root();
    let cache = tempfile::tempdir().unwrap();
    let server = start(
        root.path(),
        cache.path(),
        &[
            ("CASTERPAK_PROTECTION_METHOD", "aes-128"),
            (
                "CASTERPAK_PROTECTION_SECRET",
                "ffeeddccbbaa99887766554433221100",
            ),
            ("CASTERPAK_PROTECTION_PATHS", "[\"film\"]"),
        ],
    );
    let path = "/i/film.mp4/index_0_av.m3u8";
    let (text, _) = playlist_for(&server, path, Some("gb"));
    // The pre-roll is clear; each content segment names its IV, its
    // number without the pre-roll (what it was encrypted with).
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-KEY"))
        .collect();
    assert_eq!(keys.len(), 2, "{text}");
    assert!(keys[0].ends_with(&format!(",IV=0x{:032X}", 1)), "{text}");
    assert!(keys[1].ends_with(&format!(",IV=0x{:032X}", 2)), "{text}");
    let first_key = text.find("#EXT-X-KEY").unwrap();
    assert!(text.find("/i/ads/gb.mp4/segment1_0_av.ts").unwrap() < first_key);
    let base = format!("http://{}", server.addr);
    assert_eq!(frames(&format!("{base}{path}"), "gb"), 420);
}

#[test]
#[cfg_attr(
    any(casterpak_no_browser, casterpak_no_ffmpeg),
    ignore = "needs chromium, node and tests/browser/node_modules (npm ci); needs ffmpeg"
)]
fn hls_js_plays_through_the_pre_roll_into_the_content() {
    let root = root();
    let cache = tempfile::tempdir().unwrap();
    let server = start(root.path(), cache.path(), &[]);
    // No country from a browser here: the default pre-roll, 4 s.
    let url = format!("http://{}/i/film.mp4/master.m3u8", server.addr);
    let report = play_to("hls", &url, 7, &[]);
    assert!(report["currentTime"].as_f64().unwrap() >= 7.0, "{report}");
    assert_eq!(report["videoSize"], "320x180", "{report}");
}

/// CMAF: an fMP4 HLS media playlist gets the pre-roll's map and fragments
/// before a discontinuity, a DASH MPD a Period of the pre-roll's before
/// the content's; hls.js and dash.js play through both.
#[test]
#[cfg_attr(
    any(casterpak_no_browser, casterpak_no_ffmpeg),
    ignore = "needs chromium, node and tests/browser/node_modules (npm ci); needs ffmpeg"
)]
fn cmaf_playlists_and_dash_periods_play_through_the_pre_roll() {
    let root = root();
    let cache = tempfile::tempdir().unwrap();
    let server = start(root.path(), cache.path(), &[]);
    let (mpd, vary) = playlist_for(&server, "/cmaf/film.mp4/manifest.mpd", Some("gb"));
    assert_eq!(vary.as_deref(), Some("X-Country"));
    let ad = mpd
        .find("<Period id=\"preroll\" start=\"PT0S\">\n    <BaseURL>/cmaf/ads/gb.mp4/</BaseURL>");
    let content = mpd.find("<Period id=\"0\" start=\"PT4.0");
    assert!(ad.is_some() && ad < content, "{mpd}");
    let (plain, _) = playlist_for(&server, "/cmaf/film.mp4/manifest.mpd?preroll=0", Some("gb"));
    assert_eq!(plain.matches("<Period ").count(), 1, "{plain}");

    let (playlist, vary) = playlist_for(&server, "/cmaf/film.mp4/index_0_v.m3u8", Some("de"));
    assert_eq!(vary.as_deref(), Some("X-Country"));
    let lines: Vec<&str> = playlist.lines().collect();
    let at = |line: &str| lines.iter().position(|l| *l == line);
    let ad_map = at("#EXT-X-MAP:URI=\"/cmaf/ads/gb.mp4/init_0_v.mp4\"");
    let cut = at("#EXT-X-DISCONTINUITY");
    let map = at("#EXT-X-MAP:URI=\"init_0_v.mp4\"");
    assert!(ad_map.is_some() && ad_map < cut && cut < map, "{playlist}");
    assert_eq!(
        at("/cmaf/ads/gb.mp4/seg1_0_v.m4s").map(|l| l < cut.unwrap()),
        Some(true)
    );

    // No country from a browser here: the default pre-roll, 4 s.
    let base = format!("http://{}/cmaf/film.mp4", server.addr);
    for (player, url) in [
        ("hls", format!("{base}/master.m3u8")),
        ("dashjs", format!("{base}/manifest.mpd")),
    ] {
        let report = play_to(player, &url, 7, &[]);
        assert!(
            report["currentTime"].as_f64().unwrap() >= 7.0,
            "{player}: {report}"
        );
    }
}
