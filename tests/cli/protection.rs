//! Protected streams as an operator runs them: signed URLs (`[tokens]`,
//! `casterpak token`) and HLS AES-128 (`[protection]`), checked with tools
//! we did not write: openssl computes the token's HMAC and the key, and
//! decrypts a segment; ffprobe decodes the encrypted stream through the
//! server, key included; hls.js plays it in Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::browser::play_to;
use crate::http_client::{request, Reply, Server};
use crate::support::{casterpak, ffprobe_count, fixture};

const TOKEN_KEY: &str = "00112233445566778899aabbccddeeff";
const SECRET: &str = "ffeeddccbbaa99887766554433221100";

/// A media root with `films/a.mp4` and `free/b.mp4`, and a configuration:
/// tokens required, and `films/` protected with AES-128.
struct Setup {
    root: tempfile::TempDir,
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn setup(extra: &str) -> Setup {
    let root = tempfile::tempdir().unwrap();
    for (dir, name) in [("films", "a.mp4"), ("free", "b.mp4")] {
        std::fs::create_dir(root.path().join(dir)).unwrap();
        std::fs::copy(
            fixture("h264-aac-bframes.mp4"),
            root.path().join(dir).join(name),
        )
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("casterpak.toml");
    std::fs::write(
        &config,
        format!(
            "[tokens]\nkey = \"{TOKEN_KEY}\"\nrequired = true\n\
             [protection]\nmethod = \"aes-128\"\nsecret = \"{SECRET}\"\npaths = [\"films/\"]\n{extra}"
        ),
    )
    .unwrap();
    Setup { root, dir, config }
}

impl Setup {
    fn serve(&self) -> Server {
        Server::start(
            self.root.path(),
            &self.dir.path().join("cache"),
            &["--config", self.config.to_str().unwrap()],
        )
    }

    /// `casterpak token` with `args`.
    fn token(&self, args: &[&str]) -> String {
        let out = casterpak()
            .args(["--config", self.config.to_str().unwrap(), "token"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

fn with_cookie(server: &Server, path: &str, token: &str) -> Reply {
    let cookie = format!("hdnea={token}");
    request(&server.addr, "GET", path, &[("Cookie", &cookie)])
}

fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}");
    out.stdout
}

/// HMAC-SHA256 of `data` under the hex `key`, in hex, by openssl.
fn openssl_hmac(key: &str, data: &str) -> String {
    let out = openssl(
        &[
            "dgst",
            "-sha256",
            "-mac",
            "HMAC",
            "-macopt",
            &format!("hexkey:{key}"),
        ],
        data.as_bytes(),
    );
    let text = String::from_utf8(out).unwrap();
    text.rsplit(' ').next().unwrap().trim().to_string()
}

#[test]
fn casterpak_token_prints_what_openssl_signs_and_serve_takes() {
    let s = setup("");
    let token = s.token(&["/i/free/b.mp4/master.m3u8", "--ttl", "1h"]);
    let (signed, hmac) = token.split_once("~hmac=").unwrap();
    let (exp, acl) = signed.split_once('~').unwrap();
    assert_eq!(acl, "acl=/i/free/b.mp4/master.m3u8");
    let expiry: u64 = exp.strip_prefix("exp=").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 3590..=now + 3610).contains(&expiry),
        "{expiry} vs {now}"
    );
    assert_eq!(hmac, openssl_hmac(TOKEN_KEY, signed));
    let server = s.serve();
    let path = "/i/free/b.mp4/master.m3u8";
    assert_eq!(server.get(&format!("{path}?hdnea={token}")).status, 200);
    // Only for that path.
    let reply = server.get(&format!("/i/free/b.mp4/index_0_av.m3u8?hdnea={token}"));
    assert_eq!(reply.status, 403);
    // Without tokens.key there is nothing to sign with.
    let out = casterpak()
        .args(["token", "/x", "--ttl", "60"])
        .current_dir(s.dir.path().parent().unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokens.key is not set"));
}

#[test]
fn every_bad_token_is_403_in_the_query_and_in_the_cookie() {
    let s = setup("");
    let server = s.serve();
    let path = "/i/free/b.mp4/index_0_av.m3u8";
    let good = s.token(&["x", "--acl", "/i/free/*", "--ttl", "1h"]);
    let expired = {
        let out = casterpak()
            .args(["--config", s.config.to_str().unwrap(), "token", "x"])
            .args(["--acl", "/i/free/*", "--ttl", "60", "--now", "1000"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    // Not yet valid: signed here with a start in an hour (openssl's HMAC).
    let later = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let signed = format!("st={}~exp={}~acl=/i/free/*", now + 3600, now + 7200);
        format!("{signed}~hmac={}", openssl_hmac(TOKEN_KEY, &signed))
    };
    let wrong_acl = s.token(&["x", "--acl", "/i/films/*", "--ttl", "1h"]);
    let other_client = s.token(&["x", "--acl", "/i/free/*", "--ttl", "1h", "--ip", "10.1.2.3"]);
    let tampered = good.replace("acl=/i/free/*", "acl=/i/*");
    let mut flipped = good.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == '0' { '1' } else { '0' });
    for (what, token, reason) in [
        ("expired", expired.as_str(), "expired"),
        ("not yet valid", &later, "not valid yet"),
        ("wrong ACL", &wrong_acl, "other paths"),
        ("another client", &other_client, "another client"),
        ("a widened ACL", &tampered, "signature"),
        ("a flipped HMAC", &flipped, "signature"),
        ("garbage", "exp=1~acl=/i/*~hmac=zz", "malformed"),
    ] {
        for reply in [
            server.get(&format!("{path}?hdnea={token}")),
            with_cookie(&server, path, token),
        ] {
            assert_eq!(reply.status, 403, "{what}: {}", reply.text());
            assert!(reply.text().contains(reason), "{what}: {}", reply.text());
            assert_eq!(reply.header("Cache-Control"), Some("no-store"), "{what}");
        }
    }
    let missing = server.get(path);
    assert_eq!(missing.status, 403);
    assert!(missing.text().contains("a token is required"));
    for reply in [
        server.get(&format!("{path}?hdnea={good}")),
        with_cookie(&server, path, &good),
        // Percent-encoded, as some players send it.
        server.get(&format!("{path}?x=1&hdnea={}", good.replace('*', "%2A"))),
    ] {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}

#[test]
fn playlists_carry_a_query_token_to_every_uri_and_a_cookie_needs_none() {
    let s = setup("");
    let server = s.serve();
    let token = s.token(&["x", "--acl", "/i/*", "--ttl", "1h"]);
    let master = server.get(&format!("/i/films/a.mp4/master.m3u8?hdnea={token}"));
    assert_eq!(master.status, 200);
    assert!(master
        .header("Cache-Control")
        .unwrap()
        .starts_with("private"));
    let text = master.text();
    let uris: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(uris, [format!("index_0_av.m3u8?hdnea={token}")]);
    let playlist = server.get(&format!("/i/films/a.mp4/index_0_av.m3u8?hdnea={token}"));
    let text = playlist.text();
    let segments: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(segments.len() > 1);
    for (k, line) in segments.iter().enumerate() {
        assert_eq!(*line, format!("segment{}_0_av_1.ts?hdnea={token}", k + 1));
    }
    assert!(
        text.contains(&format!("URI=\"key_1_0.key?hdnea={token}\"")),
        "{text}"
    );
    // Each viewer's own playlist: another token, another ETag.
    let other = s.token(&["x", "--acl", "/i/films/*", "--ttl", "1h"]);
    let theirs = server.get(&format!("/i/films/a.mp4/index_0_av.m3u8?hdnea={other}"));
    assert_ne!(theirs.header("ETag"), playlist.header("ETag"));
    // With the cookie the URIs stay as they are; while tokens are on, a
    // playlist is still each viewer's own (not kept by shared caches).
    let plain = with_cookie(&server, "/i/films/a.mp4/index_0_av.m3u8", &token);
    assert_eq!(plain.status, 200);
    assert!(!plain.text().contains("hdnea"));
    assert!(plain
        .header("Cache-Control")
        .unwrap()
        .starts_with("private"));
}

/// The segments are AES-128-CBC of the clear segments, IV the sequence
/// number; the key is the documented derivation; ffprobe decodes the
/// whole stream through the server as many frames as the source has.
#[test]
fn an_aes_128_stream_decrypts_with_openssl_and_decodes_through_the_server() {
    let s = setup("");
    let server = s.serve();
    let token = s.token(&["x", "--acl", "/i/*!/cmaf/*", "--ttl", "1h"]);
    let get = |path: &str| server.get(&format!("{path}?hdnea={token}"));
    let key_path = "/i/films/a.mp4/key_1_0.key";
    let key = get(key_path);
    assert_eq!(key.status, 200);
    assert_eq!(key.header("Cache-Control"), Some("no-store"));
    assert_eq!(key.body.len(), 16);
    let derived = openssl_hmac(SECRET, "casterpak aes-128 key|films/a.mp4");
    assert_eq!(crate::support::hex(&key.body), derived[..32]);
    // Without a token, or with another secret's id: no key.
    assert_eq!(server.get(key_path).status, 403);
    assert_eq!(get("/i/films/a.mp4/key_9_0.key").status, 404);
    // Clear streams have none.
    assert_eq!(get("/i/free/b.mp4/key_1_0.key").status, 404);
    let clear_playlist = get("/i/free/b.mp4/index_0_av.m3u8").text();
    assert!(!clear_playlist.contains("EXT-X-KEY"));

    let encrypted = get("/i/films/a.mp4/segment2_0_av_1.ts");
    let clear = get("/i/free/b.mp4/segment2_0_av.ts");
    assert_eq!(encrypted.status, 200);
    assert_eq!(encrypted.body.len(), (clear.body.len() / 16 + 1) * 16);
    let decrypted = openssl(
        &[
            "enc",
            "-d",
            "-aes-128-cbc",
            "-K",
            &derived[..32],
            "-iv",
            &format!("{:032x}", 2),
        ],
        &encrypted.body,
    );
    assert!(
        decrypted == clear.body,
        "decrypted segment 2 is the clear one"
    );
    // A protected stream's segments are named with their secret's id: not
    // without it, nor a clear stream's with one.
    assert_eq!(get("/i/films/a.mp4/segment2_0_av.ts").status, 404);
    assert_eq!(get("/i/films/a.mp4/segment2_0_av_9.ts").status, 404);
    assert_eq!(get("/i/free/b.mp4/segment2_0_av_1.ts").status, 404);
    // And cached so: a hit gives the same bytes.
    let again = get("/i/films/a.mp4/segment2_0_av_1.ts");
    assert_eq!(again.header("X-Cache"), Some("HIT"));
    assert!(again.body == encrypted.body);

    let url = format!(
        "http://{}/i/films/a.mp4/master.m3u8?hdnea={token}",
        server.addr
    );
    assert_eq!(
        ffprobe_count(Path::new(&url), "v:0", true),
        ffprobe_count(&fixture("h264-aac-bframes.mp4"), "v:0", true)
    );
    // The master's BANDWIDTH counts the padding.
    let master = get("/i/films/a.mp4/master.m3u8").text();
    let clear_master = get("/i/free/b.mp4/master.m3u8").text();
    let bandwidth = |m: &str| -> u64 {
        m.split("BANDWIDTH=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(bandwidth(&master) > bandwidth(&clear_master));
    // Encrypted whole, a segment has no byte range a player could decode
    // alone: no I-frame playlist.
    assert!(!master.contains("I-FRAME") && clear_master.contains("I-FRAME"));
    assert_eq!(get("/i/films/a.mp4/iframes_0_av.m3u8").status, 404);
    // Its fMP4 HLS form is cbcs, signalled for W3C ClearKey; the clear
    // stream's is not.
    let cmaf = get("/cmaf/films/a.mp4/index_0_v.m3u8").text();
    assert!(
        cmaf.contains("#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,")
            && cmaf.contains("KEYFORMAT=\"org.w3.clearkey\""),
        "{cmaf}"
    );
    assert!(!get("/cmaf/free/b.mp4/index_0_v.m3u8")
        .text()
        .contains("EXT-X-KEY"));
}

/// The ClearKey license of a protected stream's CMAF form: its key id and
/// key (base64url), only with a token, never stored.
fn clear_key(server: &Server, token: &str, dir: &str) -> (String, String) {
    let path = format!("/cmaf/{dir}/key_1_0.key");
    assert_eq!(server.get(&path).status, 403);
    let reply = server.get(&format!("{path}?hdnea={token}"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("Cache-Control"), Some("no-store"));
    let jwk: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let key = &jwk["keys"][0];
    assert_eq!(key["kty"], "oct");
    let hex = |field: &str| crate::support::hex(&base64url_decoded(key[field].as_str().unwrap()));
    (hex("kid"), hex("k"))
}

fn base64url_decoded(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {text}"),
        }
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | value(c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The CMAF form of a protected stream is `cbcs`: the MPD names the key id
/// in `ContentProtection`, the init segment carries `encv`/`enca` and a
/// `pssh`, and ffmpeg, given the key from the ClearKey license, decrypts
/// and decodes every frame of the source (and without it, cannot).
#[test]
fn a_cbcs_stream_decrypts_with_ffmpeg_given_its_clear_key() {
    let s = setup("");
    let server = s.serve();
    let token = s.token(&["x", "--acl", "/cmaf/*", "--ttl", "1h"]);
    let get = |path: &str| server.get(&format!("{path}?hdnea={token}"));
    let (kid, key) = clear_key(&server, &token, "films/a.mp4");
    let mpd = get("/cmaf/films/a.mp4/manifest.mpd").text();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &kid[..8],
        &kid[8..12],
        &kid[12..16],
        &kid[16..20],
        &kid[20..]
    );
    assert!(
        mpd.contains(&format!("value=\"cbcs\" cenc:default_KID=\"{uuid}\"")),
        "{mpd}"
    );
    assert!(mpd.contains("urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"));
    assert!(!get("/cmaf/free/b.mp4/manifest.mpd")
        .text()
        .contains("ContentProtection"));
    let work = tempfile::tempdir().unwrap();
    // ffprobe's count of decoded frames in `file` (with `key`, if given)
    // and what it said on stderr.
    let count = |file: &Path, select: &str, key: Option<&str>| -> (u64, String) {
        let mut command = Command::new("ffprobe");
        command.args(["-v", "error"]);
        if let Some(key) = key {
            command.args(["-decryption_key", key]);
        }
        let out = command
            .args(["-count_frames", "-select_streams", select])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let frames = text.trim().trim_end_matches(',').parse().unwrap_or(0);
        (frames, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for (track, select) in [("v", "v:0"), ("a", "a:0")] {
        let init = get(&format!("/cmaf/films/a.mp4/init_0_{track}_1.mp4"));
        let marks: &[&[u8]] = &[b"sinf", b"cbcs", b"tenc", b"pssh"];
        for mark in marks {
            assert!(
                init.body.windows(4).any(|w| w == *mark),
                "{track}: no {mark:?}"
            );
        }
        let clear_init = get(&format!("/cmaf/free/b.mp4/init_0_{track}.mp4"));
        // Each segment decoded on its own, after its init segment, as many
        // frames as the same segment of the clear form of the same file.
        let mut frames = 0;
        for k in 1.. {
            let fragment = get(&format!("/cmaf/films/a.mp4/seg{k}_0_{track}_1.m4s"));
            if fragment.status == 404 {
                break;
            }
            assert_eq!(fragment.status, 200);
            assert!(fragment.body.windows(4).any(|w| w == b"senc"));
            let clear = get(&format!("/cmaf/free/b.mp4/seg{k}_0_{track}.m4s"));
            let sealed_file = work.path().join(format!("{track}{k}.mp4"));
            let clear_file = work.path().join(format!("{track}{k}-clear.mp4"));
            std::fs::write(
                &sealed_file,
                [init.body.as_slice(), &fragment.body].concat(),
            )
            .unwrap();
            std::fs::write(
                &clear_file,
                [clear_init.body.as_slice(), &clear.body].concat(),
            )
            .unwrap();
            let (decrypted, errors) = count(&sealed_file, select, Some(&key));
            assert!(errors.is_empty(), "{track} segment {k}: {errors}");
            assert_eq!(
                decrypted,
                count(&clear_file, select, None).0,
                "{track} segment {k}"
            );
            frames += decrypted;
            // The samples really are encrypted: without the key, the
            // decoder meets garbage.
            let (_, errors) = count(&sealed_file, select, None);
            assert!(
                !errors.is_empty(),
                "{track} segment {k} decodes without its key"
            );
        }
        assert!(frames > 0);
        if track == "v" {
            let source = ffprobe_count(&fixture("h264-aac-bframes.mp4"), select, true);
            assert_eq!(Some(frames), source, "{track}");
        }
    }
}

/// In Chromium, with W3C ClearKey: hls.js plays the `cbcs` fMP4 HLS stream
/// and Shaka Player the DASH one, each asking casterpak's license URL (a
/// POST, with the token in the query string); dash.js plays the DASH one
/// given the key from that license (its license-server path fails in
/// Chromium: "Error generating key request"). A wrong key does not play.
#[test]
#[cfg_attr(
    casterpak_no_browser,
    ignore = "needs chromium, node and tests/browser/node_modules (npm ci)"
)]
fn hls_js_shaka_and_dash_js_play_cbcs_with_clear_key() {
    let s = setup("");
    let server = s.serve();
    let token = s.token(&["x", "--acl", "/cmaf/*", "--ttl", "1h"]);
    let (kid, key) = clear_key(&server, &token, "films/a.mp4");
    let base = format!("http://{}/cmaf/films/a.mp4", server.addr);
    let license = format!("{base}/key_1_0.key?hdnea={token}");
    let pair = format!("{kid}:{key}");
    for (player, manifest, how) in [
        ("hls", "master.m3u8", ["--license", license.as_str()]),
        ("shaka", "manifest.mpd", ["--license", license.as_str()]),
        ("dashjs", "manifest.mpd", ["--clearkey", pair.as_str()]),
    ] {
        let url = format!("{base}/{manifest}?hdnea={token}");
        // Past the first segment (6 s): every fragment's senc counts.
        let result = play_to(player, &url, 8, &how);
        assert!(
            result["currentTime"].as_f64().unwrap() >= 8.0,
            "{player}: {result}"
        );
        assert_eq!(
            result["fatal"],
            serde_json::Value::Null,
            "{player}: {result}"
        );
    }
    // Without a token the license is refused, and nothing plays.
    let wrong = format!("{kid}:{}", "0".repeat(32));
    let unlicensed = format!("{base}/key_1_0.key");
    for how in [
        ["--clearkey", wrong.as_str()],
        ["--license", unlicensed.as_str()],
    ] {
        let out = Command::new("node")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/play.mjs"))
            .arg(format!("{base}/manifest.mpd?hdnea={token}"))
            .args(["3", "--player", "shaka", "--timeout", "20"])
            .args(how)
            .output()
            .unwrap();
        let report: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
        assert_eq!(report["ok"], false, "played with {how:?}: {report}");
    }
    // The license request itself: a POST whose body is not read.
    let posted = request(
        &server.addr,
        "POST",
        &format!("/cmaf/films/a.mp4/key_1_0.key?hdnea={token}"),
        &[
            ("Content-Length", "2"),
            ("Content-Type", "application/json"),
        ],
    );
    assert_eq!(posted.status, 200, "{}", posted.text());
    assert!(posted.text().contains("\"kty\":\"oct\""));
    let too_big = request(
        &server.addr,
        "POST",
        &format!("/cmaf/films/a.mp4/key_1_0.key?hdnea={token}"),
        &[("Content-Length", "5000")],
    );
    assert_eq!(too_big.status, 413);
}

#[test]
#[cfg_attr(
    casterpak_no_browser,
    ignore = "needs chromium, node and tests/browser/node_modules (npm ci)"
)]
fn hls_js_plays_an_aes_128_stream_with_a_query_token() {
    let s = setup("");
    let server = s.serve();
    let token = s.token(&["x", "--acl", "/i/films/*", "--ttl", "1h"]);
    let url = format!(
        "http://{}/i/films/a.mp4/master.m3u8?hdnea={token}",
        server.addr
    );
    // Past the first segment: each segment's IV is its own.
    let result = play_to("hls", &url, 8, &[]);
    assert!(result["currentTime"].as_f64().unwrap() >= 8.0, "{result}");
    assert_eq!(result["fatal"], serde_json::Value::Null);
}

/// A rotated secret: new playlists name the new key id; the old id's key
/// is still answered while it is listed as retired.
#[test]
fn a_rotated_secret_keeps_the_old_keys_answered() {
    let s = setup("key_id = \"2\"\nretired = { \"1\" = \"ffeeddccbbaa99887766554433221100\" }\n");
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config).unwrap().replace(
            &format!("secret = \"{SECRET}\""),
            &format!("secret = \"{}\"", "ab".repeat(16)),
        ),
    )
    .unwrap();
    let server = s.serve();
    let token = s.token(&["x", "--acl", "/i/*", "--ttl", "1h"]);
    let get = |path: &str| server.get(&format!("{path}?hdnea={token}"));
    assert!(get("/i/films/a.mp4/index_0_av.m3u8")
        .text()
        .contains("key_2_0.key"));
    let playlist = get("/i/films/a.mp4/index_0_av.m3u8").text();
    assert!(playlist.contains("segment1_0_av_2.ts"), "{playlist}");
    let old = get("/i/films/a.mp4/key_1_0.key");
    let new = get("/i/films/a.mp4/key_2_0.key");
    assert_eq!((old.status, new.status), (200, 200));
    let derived = openssl_hmac(SECRET, "casterpak aes-128 key|films/a.mp4");
    assert_eq!(crate::support::hex(&old.body), derived[..32]);
    assert_ne!(old.body, new.body);
    // A player still on a playlist of the old secret gets its segments,
    // encrypted with the old key, at the URLs it names: a URL's bytes
    // never change with a rotation.
    let clear = get("/i/free/b.mp4/segment2_0_av.ts").body;
    for (id, key) in [("1", &old.body), ("2", &new.body)] {
        let sealed = get(&format!("/i/films/a.mp4/segment2_0_av_{id}.ts"));
        assert_eq!(sealed.status, 200, "key {id}");
        let iv = format!("{:032x}", 2);
        let opened = openssl(
            &[
                "enc",
                "-d",
                "-aes-128-cbc",
                "-K",
                &crate::support::hex(key),
                "-iv",
                &iv,
            ],
            &sealed.body,
        );
        assert!(opened == clear, "segment 2 of key {id} decrypts with it");
    }
}

/// `protection.key_prefix`: keys answered under a URL prefix of their own
/// (to route them to a tier of their own), which playlists name; ffprobe
/// still decodes the stream through the server.
#[test]
fn keys_can_live_under_a_prefix_of_their_own() {
    let s = setup("key_prefix = \"/keys/\"\n");
    let server = s.serve();
    let token = s.token(&["x", "--acl", "/i/*!/keys/*", "--ttl", "1h"]);
    let get = |path: &str| server.get(&format!("{path}?hdnea={token}"));
    let playlist = get("/i/films/a.mp4/index_0_av.m3u8").text();
    assert!(
        playlist.contains(&format!(
            "URI=\"/keys/films/a.mp4/key_1_0.key?hdnea={token}\""
        )),
        "{playlist}"
    );
    let key = get("/keys/films/a.mp4/key_1_0.key");
    assert_eq!((key.status, key.body.len()), (200, 16));
    let derived = openssl_hmac(SECRET, "casterpak aes-128 key|films/a.mp4");
    assert_eq!(crate::support::hex(&key.body), derived[..32]);
    assert_eq!(server.get("/keys/films/a.mp4/key_1_0.key").status, 403);
    // Only keys there, and keys only there.
    assert_eq!(get("/keys/films/a.mp4/master.m3u8").status, 404);
    assert_eq!(get("/i/films/a.mp4/key_1_0.key").status, 404);
    let url = format!(
        "http://{}/i/films/a.mp4/master.m3u8?hdnea={token}",
        server.addr
    );
    assert_eq!(
        ffprobe_count(Path::new(&url), "v:0", true),
        ffprobe_count(&fixture("h264-aac-bframes.mp4"), "v:0", true)
    );
}

/// `sample-aes`: the CMAF form only (cbcs), the MPEG-TS form refused.
#[test]
fn sample_aes_serves_the_cmaf_form_only() {
    let s = setup("");
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("method = \"aes-128\"", "method = \"sample-aes\""),
    )
    .unwrap();
    let server = s.serve();
    let token = s.token(&["x", "--acl", "/*", "--ttl", "1h"]);
    let get = |path: &str| server.get(&format!("{path}?hdnea={token}"));
    for path in [
        "/i/films/a.mp4/master.m3u8",
        "/i/films/a.mp4/segment1_0_av.ts",
        "/i/films/a.mp4/key_1_0.key",
    ] {
        let reply = get(path);
        assert_eq!(reply.status, 403, "{path}: {}", reply.text());
        assert!(reply.text().contains("sample-aes"), "{path}");
    }
    assert_eq!(get("/i/free/b.mp4/master.m3u8").status, 200);
    let playlist = get("/cmaf/films/a.mp4/index_0_v.m3u8");
    assert!(
        playlist.text().contains("METHOD=SAMPLE-AES"),
        "{}",
        playlist.text()
    );
    assert_eq!(get("/cmaf/films/a.mp4/key_1_0.key").status, 200);
}

#[test]
fn a_bad_protection_or_tokens_configuration_stops_startup_naming_the_key() {
    for (body, expected) in [
        ("[tokens]\nrequired = true\n", "tokens.required: needs tokens.key"),
        ("[tokens]\nkey = \"0011\"\n", "tokens.key: 2 bytes is too short"),
        ("[protection]\nmethod = \"aes-128\"\n", "protection.secret: needed"),
        (
            "[protection]\nmethod = \"aes-128\"\nsecret = \"/no/such/file\"\n",
            "protection.secret: neither hex nor a readable file",
        ),
        (
            "[protection]\nmethod = \"aes-128\"\nsecret = \"00112233445566778899aabbccddeeff\"\nkey_id = \"a-b\"\n",
            "the key id \"a-b\"",
        ),
        ("[protection]\nmethod = \"cenc\"\n", "unknown variant"),
        ("[protection]\nkey_prefix = \"keys\"\n", "protection.key_prefix"),
        ("[protection]\nkey_prefix = \"/i/keys/\"\n", "protection.key_prefix"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("casterpak.toml");
        std::fs::write(&config, body).unwrap();
        let out = casterpak()
            .args(["--config", config.to_str().unwrap(), "master", "x.mp4"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{body}");
        assert!(stderr.contains(expected), "{body}: {stderr}");
    }
}
