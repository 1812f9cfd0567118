//! nginx serving a folder as static files, as an HTTP origin for inputs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{answers, free_ports, http, sync_log, wait_ready, Request, SYNC_PREFIX};

/// Debian's nginx package puts it here (not on a user's PATH).
const NGINX: &str = "/usr/sbin/nginx";

/// One field per tab; `escape=json` turns a tab (or quote, backslash,
/// control byte) inside a field into a backslash escape, so the split is
/// safe. `$uri` is the decoded path, `$args` the raw query.
const LOG_FORMAT: &str = r"'$request_method\t$uri\t$args\t$status\t$body_bytes_sent\t$http_range'";

/// nginx, one process (`master_process off`, so that killing the child we
/// started leaves no worker behind), serving `root` on a loopback port
/// with its default static-file behaviour: Range requests answered with
/// 206, ETag and Last-Modified. Stopped when dropped.
pub struct Nginx {
    child: Option<Child>,
    port: u16,
    access_log: PathBuf,
    syncs: AtomicU32,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx serving `root`, and returns once it accepts connections.
    pub fn start(root: &Path) -> Nginx {
        let root = root.canonicalize().expect("the root exists");
        // A port taken between choosing it and nginx binding it: choose again.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_ports(1)[0];
            let conf = dir.path().join("nginx.conf");
            fs::write(&conf, config(dir.path(), &root, port)).unwrap();
            let error_log = dir.path().join("error.log");
            let mut child = Command::new(NGINX)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(&error_log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{NGINX}: {e} (apt-get install nginx)"));
            // nginx writes its pid file once it has bound its port: then
            // what answers is this nginx, not a process that took the port.
            let pid = dir.path().join("nginx.pid");
            let ready = || pid.exists() && answers(port);
            let limit = Duration::from_secs(20);
            match wait_ready(&mut child, "nginx", &error_log, limit, ready) {
                Ok(()) => {
                    return Nginx {
                        child: Some(child),
                        port,
                        access_log: dir.path().join("access.log"),
                        syncs: AtomicU32::new(0),
                        _dir: dir,
                    }
                }
                Err(failure) => failures.push(failure),
            }
        }
        panic!("nginx did not start:\n{}", failures.join("\n"));
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Every request answered so far, oldest first, from the access log.
    pub fn requests(&self) -> Vec<Request> {
        if self.child.is_none() {
            return read_log(&self.access_log);
        }
        let sentinel = format!(
            "{SYNC_PREFIX}{}",
            self.syncs.fetch_add(1, Ordering::Relaxed)
        );
        let reply = http(self.port, "GET", &sentinel, None);
        assert!(reply.is_ok(), "nginx answers: {reply:?}");
        sync_log(&sentinel, "nginx's access log", || {
            read_log(&self.access_log)
        })
    }

    /// How many GET requests for `path` (decoded, without query) it
    /// answered, whatever their status.
    pub fn gets(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .count()
    }

    /// Kills nginx: connections are refused from now on.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(dir: &Path, root: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    types {{
        video/mp4 mp4;
        audio/mp4 m4a;
        video/mp2t ts;
        application/vnd.apple.mpegurl m3u8;
    }}
    default_type application/octet-stream;
    log_format casterpak escape=json {LOG_FORMAT};
    access_log {d}/access.log casterpak;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root "{root}";
    }}
}}
"#,
        root = root.display()
    )
}

fn read_log(path: &Path) -> Vec<Request> {
    // nginx writes the bytes of a path as they came, UTF-8 or not.
    let bytes = fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(|line| {
            let fields: Vec<String> = line.split('\t').map(unescape_json).collect();
            let [method, path, query, status, bytes, range] = &fields[..] else {
                panic!("access log line {line:?}");
            };
            Request {
                method: method.clone(),
                path: path.clone(),
                query: Some(query.clone()),
                status: status.parse().unwrap(),
                range: (!range.is_empty()).then(|| range.clone()),
                bytes_sent: Some(bytes.parse().unwrap()),
            }
        })
        .collect()
}

/// Undoes nginx's `escape=json` (`\"`, `\\`, `\n`... and `\u00XX`).
fn unescape_json(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16).unwrap();
                out.push(char::from_u32(code).unwrap());
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}
