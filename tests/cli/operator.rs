//! What a new operator runs into: each mistake gets a clear refusal that
//! says what is wrong, and nothing is changed or created by it.

use std::fs;
use std::path::Path;

use predicates::prelude::*;

use crate::support::{casterpak, fixture};

#[test]
fn prewarming_says_what_it_fills_and_refuses_paths_outside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    fs::create_dir(&root).unwrap();
    fs::copy(fixture("aac-only.m4a"), root.join("radio.m4a")).unwrap();
    let cache = dir.path().join("cache");
    let run = |input: &Path| {
        casterpak()
            .arg("--root")
            .arg(&root)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["package", "--json"])
            .arg(input)
            .assert()
    };
    // An absolute path under the root is the same as its path in the URL.
    let out = run(&root.join("radio.m4a"))
        .success()
        .stderr(predicate::str::contains(format!(
            "pre-warming the cache in {}",
            cache.display()
        )))
        .stderr(predicate::str::contains(root.display().to_string()))
        .get_output()
        .stdout
        .clone();
    let summary: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(summary["masters"][0], "/i/radio.m4a/master.m3u8");
    // A file elsewhere is refused, saying why and what to do instead.
    run(&fixture("ac3.mp4"))
        .failure()
        .stderr(predicate::str::contains("not under the media root"))
        .stderr(predicate::str::contains("--out DIR"));
}

#[test]
fn an_existing_file_as_out_is_refused_even_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("notes.txt");
    fs::write(&out, "keep me").unwrap();
    casterpak()
        .args(["package", "--force", "--out"])
        .arg(&out)
        .arg(fixture("aac-only.m4a"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("a file, not a package directory"));
    assert_eq!(fs::read_to_string(&out).unwrap(), "keep me");
    let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing else was made");
}

#[test]
fn serve_refuses_a_media_root_that_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    casterpak()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--root",
            "/nonexistent/media",
        ])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "media root /nonexistent/media: no such directory",
        ));
    assert!(!dir.path().join("cache").exists(), "no cache was made");
}

#[test]
fn an_os_error_is_told_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = casterpak()
        .args(["package", "/nonexistent/film.mp4", "--out"])
        .arg(dir.path().join("pkg"))
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
    assert!(text.contains("/nonexistent/film.mp4"), "{text}");
}

#[test]
fn configuration_errors_point_at_the_line_and_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("casterpak.toml");
    fs::write(
        &file,
        "[media]\nroot = \"/srv\"\n\n[serer]\nlisten = \"x\"\n",
    )
    .unwrap();
    let err = casterpak()
        .arg("--config")
        .arg(&file)
        .arg("master")
        .arg("a.mp4")
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(err).unwrap();
    assert!(err.contains("line 4"), "the line of [serer]: {err}");
    assert!(err.contains("unknown field `serer`"), "{err}");
    assert!(
        err.lines().count() > 2,
        "as the TOML parser lays it out: {err}"
    );
    casterpak()
        .env("CASTERPAK_CACHE_OUTPUT_TTL", "3 weeks")
        .args(["master", "a.mp4"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("CASTERPAK_CACHE_OUTPUT_TTL"))
        .stderr(predicate::str::contains("cache.output_ttl"));
    // A timeout of 0 would close every connection at once.
    casterpak()
        .env("CASTERPAK_SERVER_KEEPALIVE_TIMEOUT", "0")
        .args(["master", "a.mp4"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("server.keepalive_timeout: 0 s"));
}

#[test]
fn man_pages_carry_global_options_and_operator_sections() {
    for sub in ["gc", "serve", "package"] {
        let page = casterpak().args(["man", sub]).output().unwrap().stdout;
        let page = String::from_utf8(page).unwrap();
        for wanted in [
            "\\-\\-cache\\-dir",
            "\\-\\-config",
            "CONFIGURATION",
            "ENVIRONMENT",
        ] {
            assert!(page.contains(wanted), "casterpak-{sub}(1) lacks {wanted}");
        }
    }
    let serve =
        String::from_utf8(casterpak().args(["man", "serve"]).output().unwrap().stdout).unwrap();
    assert!(serve.contains(".SH URLS"), "{serve}");
    let top = String::from_utf8(casterpak().arg("man").output().unwrap().stdout).unwrap();
    assert!(
        !top.contains("casterpak\\-help"),
        "no page for a help subcommand"
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = casterpak()
            .args(["completions", shell])
            .output()
            .unwrap()
            .stdout;
        let script = String::from_utf8(script).unwrap();
        assert!(
            !script.contains("--now") && !script.contains("'now'"),
            "{shell}: {script}"
        );
        assert!(script.contains("cache-dir"), "{shell}");
    }
}
