//! A stub of S3 for one archived object: no store we can run on loopback
//! emulates archive storage classes (SeaweedFS, MinIO and the like store
//! every object readable), so this answers as the Amazon S3 API Reference
//! documents for an object in GLACIER and its restore:
//!
//! - HeadObject: 200 with `x-amz-storage-class: GLACIER`; `x-amz-restore:
//!   ongoing-request="true"` while a restore runs, `ongoing-request="false",
//!   expiry-date="<HTTP date>"` once the restored copy is readable.
//! - GetObject before that: 403 `InvalidObjectState` ("The operation is
//!   not valid for the object's storage class", with `<StorageClass>`).
//!   After: the bytes, with Range (206 and Content-Range, 416
//!   `InvalidRange`).
//! - RestoreObject (`POST /bucket/key?restore`): 202 Accepted when no
//!   restore was asked for, 409 `RestoreAlreadyInProgress` while one runs,
//!   200 OK once the copy is restored.
//!
//! Path-style requests only, one request per connection (`Connection:
//! close`), request bodies by Content-Length only. Any Authorization header
//! is accepted, none checked: signatures are [`super::SeaweedS3`]'s job.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::{percent_decode, Request};

/// A loopback S3 endpoint holding one archived object. Stopped when
/// dropped.
pub struct ArchiveStub {
    port: u16,
    shared: Arc<Shared>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    bucket: String,
    key: String,
    bytes: Vec<u8>,
    etag: String,
    last_modified: String,
    restore_delay: Duration,
    restore_asked: Mutex<Option<Instant>>,
    requests: Mutex<Vec<Request>>,
    /// HEAD and GET leave out `x-amz-storage-class`, as some S3-compatible
    /// gateways do: only a GET's `InvalidObjectState` tells.
    hide_storage_class: AtomicBool,
}

#[derive(Clone, Copy, PartialEq)]
enum Restore {
    NotAsked,
    Ongoing,
    Done,
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl ArchiveStub {
    /// Serves `bytes` as `/{bucket}/{key}`, archived; a restore completes
    /// `restore_delay` after the first RestoreObject.
    pub fn start(bucket: &str, key: &str, bytes: Vec<u8>, restore_delay: Duration) -> ArchiveStub {
        let digest = Sha256::digest(&bytes);
        // As S3's for an object uploaded in parts: `"<hex>-<parts>"`, not
        // an MD5 of the bytes.
        let etag = format!(
            "\"{}-1\"",
            digest[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let shared = Arc::new(Shared {
            bucket: bucket.to_string(),
            key: key.to_string(),
            bytes,
            etag,
            last_modified: http_date(SystemTime::now()),
            restore_delay,
            restore_asked: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            hide_storage_class: AtomicBool::new(false),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (shared, stopping) = (shared.clone(), stopping.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || serve(&shared, stream));
                }
            })
        };
        ArchiveStub {
            port,
            shared,
            stopping,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`, for path-style requests.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The object's ETag, quotes included.
    /// From now on, answers without `x-amz-storage-class`.
    pub fn hide_storage_class(&self) {
        self.shared.hide_storage_class.store(true, Ordering::SeqCst);
    }

    pub fn etag(&self) -> String {
        self.shared.etag.clone()
    }

    /// Every request answered so far, oldest first (recorded before the
    /// reply is sent, so a request whose reply was read is in).
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for ArchiveStub {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees it is stopping.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let Some(head) = Head::read(&mut reader) else {
        return;
    };
    if head
        .header("Expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let body_len: u64 = head
        .header("Content-Length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // The RestoreRequest XML is read and ignored (at most 1 MiB of it).
    let _ = std::io::copy(
        &mut reader.take(body_len.min(1 << 20)),
        &mut std::io::sink(),
    );

    let method = head.method.as_str();
    let (raw_path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let path = percent_decode(raw_path);
    let range = head.header("Range").map(str::to_string);
    let reply = answer(shared, method, &path, query, range.as_deref());
    let sent = if method == "HEAD" {
        0
    } else {
        reply.body.len()
    };
    shared.requests.lock().unwrap().push(Request {
        method: method.to_string(),
        path,
        query: Some(query.to_string()),
        status: reply.status,
        range,
        bytes_sent: Some(sent as u64),
    });
    let _ = write_reply(&mut stream, &reply, method == "HEAD");
}

/// A request line and its headers.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    /// Reads a head of 64 KiB at most; None for a connection closed early
    /// or a request not in HTTP/1.x.
    fn read(reader: &mut impl BufRead) -> Option<Head> {
        let mut reader = reader.take(64 * 1024);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
        parts.next()?.starts_with("HTTP/1.").then_some(())?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            let (name, value) = trimmed.split_once(':')?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        Some(Head {
            method,
            target,
            headers,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn answer(shared: &Shared, method: &str, path: &str, query: &str, range: Option<&str>) -> Reply {
    if path != format!("/{}/{}", shared.bucket, shared.key) {
        return error(404, "NoSuchKey", "The specified key does not exist.", "");
    }
    let wants_restore = query
        .split('&')
        .any(|p| p == "restore" || p.starts_with("restore="));
    match (method, restore_state(shared)) {
        ("POST", _) if wants_restore => restore(shared),
        ("HEAD", state) => head(shared, state),
        ("GET", Restore::Done) => get(shared, range),
        ("GET", _) => error(
            403,
            "InvalidObjectState",
            "The operation is not valid for the object's storage class",
            "<StorageClass>GLACIER</StorageClass>",
        ),
        _ => error(
            405,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
            "",
        ),
    }
}

fn restore_state(shared: &Shared) -> Restore {
    state_of(*shared.restore_asked.lock().unwrap(), shared.restore_delay)
}

fn state_of(asked: Option<Instant>, delay: Duration) -> Restore {
    match asked {
        None => Restore::NotAsked,
        Some(at) if at.elapsed() < delay => Restore::Ongoing,
        Some(_) => Restore::Done,
    }
}

/// RestoreObject, under one lock: of two at once, one starts the restore.
fn restore(shared: &Shared) -> Reply {
    let mut asked = shared.restore_asked.lock().unwrap();
    match state_of(*asked, shared.restore_delay) {
        Restore::NotAsked => {
            *asked = Some(Instant::now());
            empty(202)
        }
        Restore::Ongoing => error(
            409,
            "RestoreAlreadyInProgress",
            "Object restore is already in progress.",
            "",
        ),
        Restore::Done => empty(200),
    }
}

fn head(shared: &Shared, state: Restore) -> Reply {
    let mut reply = object_headers(shared, 200, shared.bytes.len());
    match state {
        Restore::NotAsked => {}
        Restore::Ongoing => reply
            .headers
            .push(("x-amz-restore", r#"ongoing-request="true""#.into())),
        Restore::Done => {
            let expiry = http_date(SystemTime::now() + Duration::from_secs(86400));
            reply.headers.push((
                "x-amz-restore",
                format!(r#"ongoing-request="false", expiry-date="{expiry}""#),
            ));
        }
    }
    reply
}

fn get(shared: &Shared, range: Option<&str>) -> Reply {
    let len = shared.bytes.len();
    let Some(range) = range.and_then(|r| parse_range(r, len)) else {
        let mut reply = object_headers(shared, 200, len);
        reply.body = shared.bytes.clone();
        return reply;
    };
    let Some((first, last)) = range else {
        let mut reply = error(
            416,
            "InvalidRange",
            "The requested range is not satisfiable",
            "",
        );
        reply
            .headers
            .push(("Content-Range", format!("bytes */{len}")));
        return reply;
    };
    let mut reply = object_headers(shared, 206, last + 1 - first);
    reply
        .headers
        .push(("Content-Range", format!("bytes {first}-{last}/{len}")));
    reply.body = shared.bytes[first..=last].to_vec();
    reply
}

/// A single `bytes=` range (RFC 9110 14.1.2) as first and last offsets:
/// None to ignore the header (malformed, or several ranges, as S3 does),
/// Some(None) when it is not satisfiable.
fn parse_range(header: &str, len: usize) -> Option<Option<(usize, usize)>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let suffix: usize = last.parse().ok()?;
        return Some((suffix > 0 && len > 0).then(|| (len - suffix.min(len), len - 1)));
    }
    let first: usize = first.parse().ok()?;
    let last: usize = match last {
        "" => usize::MAX,
        last => last.parse().ok()?,
    };
    if last < first {
        return None;
    }
    Some((first < len).then(|| (first, last.min(len - 1))))
}

fn object_headers(shared: &Shared, status: u16, len: usize) -> Reply {
    let mut headers = vec![
        ("Content-Length", len.to_string()),
        ("Content-Type", "application/octet-stream".into()),
        ("ETag", shared.etag.clone()),
        ("Last-Modified", shared.last_modified.clone()),
        ("Accept-Ranges", "bytes".into()),
    ];
    if !shared.hide_storage_class.load(Ordering::SeqCst) {
        headers.push(("x-amz-storage-class", "GLACIER".into()));
    }
    Reply {
        status,
        headers,
        body: Vec::new(),
    }
}

fn empty(status: u16) -> Reply {
    Reply {
        status,
        headers: vec![("Content-Length", "0".into())],
        body: Vec::new(),
    }
}

/// An S3 error: XML body `<Error>` with Code, Message and `extra` elements.
fn error(status: u16, code: &str, message: &str, extra: &str) -> Reply {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message>{extra}<RequestId>ARCHIVESTUB</RequestId></Error>"
    )
    .into_bytes();
    Reply {
        status,
        headers: vec![
            ("Content-Length", body.len().to_string()),
            ("Content-Type", "application/xml".into()),
        ],
        body,
    }
}

fn write_reply(stream: &mut TcpStream, reply: &Reply, head: bool) -> std::io::Result<()> {
    let reason = match reply.status {
        200 => "OK",
        202 => "Accepted",
        206 => "Partial Content",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        416 => "Range Not Satisfiable",
        _ => "",
    };
    let mut text = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    text.push_str(&format!("Date: {}\r\n", http_date(SystemTime::now())));
    text.push_str("Server: AmazonS3\r\nx-amz-request-id: ARCHIVESTUB\r\n");
    for (name, value) in &reply.headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    stream.write_all(text.as_bytes())?;
    if !head {
        stream.write_all(&reply.body)?;
    }
    stream.flush()
}

/// An IMF-fixdate (RFC 9110 5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(at: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (days, time) = (secs / 86400, secs % 86400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[month as usize - 1],
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}
