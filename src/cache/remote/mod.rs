//! Remote stores: an HTTP server or an S3-compatible bucket, asked for an
//! object's identity (HEAD), for byte ranges of it, and, for an archived
//! S3 object, for a restore. Requests are blocking (`ureq`): they run on
//! the threads that package, never on the server's event loop.
//!
//! Every answer of the store is mapped to a [`RemoteError`] here, with a
//! one-line reason; the origin turns those into statuses.

pub mod sigv4;

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use md5::{Digest, Md5};

pub use sigv4::Credentials;

/// What identifies a remote object's bytes: a changed object has another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub len: u64,
    /// The store's ETag, quotes included; empty when it sends none.
    pub etag: String,
    /// `Last-Modified`, Unix seconds; 0 when the store sends none.
    pub last_modified: i64,
    /// In an archive storage class and not restored: its bytes cannot be
    /// read until a restore is done.
    pub archived: bool,
    /// Whether the ETag is the MD5 of the bytes (see [`etag_md5`]): not for
    /// objects encrypted with SSE-KMS or SSE-C, whatever it looks like.
    pub etag_is_md5: bool,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum RemoteError {
    /// The store has no such object, or will not show it (403, 404, 410).
    #[error("{0}")]
    NotFound(String),
    /// The store cannot be reached or failed (connection refused, TLS, 5xx).
    #[error("{0}")]
    Down(String),
    /// The store did not answer in time.
    #[error("{0}")]
    TimedOut(String),
    /// The object is not the one that was identified any more (a new ETag
    /// or length, or 412 to `If-Match`).
    #[error("{0}")]
    Changed(String),
    /// In an archive storage class; a restore has been asked for.
    #[error("{0}")]
    Archived(String),
    /// Any other refusal (a 4xx that names no missing object).
    #[error("{0}")]
    Refused(String),
}

/// Timeouts of every request to a store.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    /// The longest wait for the answer's header, and for each read of its body.
    pub transfer: Duration,
}

/// How the object of a name is addressed.
#[derive(Debug)]
enum Address {
    /// `base` ends with `/`; the encoded name is appended.
    Http {
        base: String,
    },
    S3(S3Bucket),
}

#[derive(Debug)]
pub struct S3Bucket {
    /// `http(s)://host[:port]`, without a trailing slash.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub key_prefix: String,
    pub path_style: bool,
    pub credentials: Credentials,
}

/// One remote store, and what has been fetched from it.
pub struct Store {
    address: Address,
    agent: ureq::Agent,
    /// Bytes and requests of object data fetched, since the last
    /// [`Store::take_fetched`].
    fetched_bytes: AtomicU64,
    fetched_requests: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// One request, before it is sent.
struct Call<'a> {
    method: &'static str,
    /// The object's name; empty for the bucket itself (a listing).
    name: &'a str,
    query: &'a str,
    headers: Vec<(&'static str, String)>,
    body: &'a [u8],
}

impl Store {
    /// An HTTP server under `base` (a URL; object names are appended).
    pub fn http(base: &str, timeouts: Timeouts) -> Store {
        let base = format!("{}/", base.trim_end_matches('/'));
        Store::new(Address::Http { base }, timeouts)
    }

    pub fn s3(bucket: S3Bucket, timeouts: Timeouts) -> Store {
        Store::new(Address::S3(bucket), timeouts)
    }

    fn new(address: Address, timeouts: Timeouts) -> Store {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeouts.connect))
            .timeout_recv_response(Some(timeouts.transfer))
            .timeout_per_read(Some(timeouts.transfer))
            .timeout_per_write(Some(timeouts.transfer))
            // A redirect would leave the signed request behind.
            .max_redirects(0)
            // Read-ahead runs 32 requests at once per input.
            .max_idle_connections(64)
            .max_idle_connections_per_host(32)
            .user_agent(concat!("casterpak/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Store {
            address,
            agent,
            fetched_bytes: AtomicU64::new(0),
            fetched_requests: AtomicU64::new(0),
        }
    }

    /// The identity of `name` now.
    pub fn head(&self, name: &str) -> Result<Meta, RemoteError> {
        let response = self.send(Call {
            method: "HEAD",
            name,
            query: "",
            headers: Vec::new(),
            body: b"",
        })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(self.refusal(name, status, &body_text(response)));
        }
        let header = |n: &str| {
            response
                .headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        let len = header("content-length").parse::<u64>().map_err(|_| {
            RemoteError::Refused(format!("{name}: the store gave no Content-Length"))
        })?;
        let storage_class = header("x-amz-storage-class");
        let restored = header("x-amz-restore").contains("ongoing-request=\"false\"");
        let encrypted = header("x-amz-server-side-encryption").starts_with("aws:kms")
            || !header("x-amz-server-side-encryption-customer-algorithm").is_empty();
        let etag = header("etag").to_string();
        Ok(Meta {
            len,
            etag_is_md5: !encrypted && etag_md5(&etag).is_some(),
            etag,
            last_modified: crate::dates::parse_http_date(header("last-modified")).unwrap_or(0),
            archived: matches!(storage_class, "GLACIER" | "DEEP_ARCHIVE") && !restored,
        })
    }

    /// Fills `buf` with the bytes of `name` from `offset`, in one request,
    /// if the object is still `meta`.
    pub fn read_range(
        &self,
        name: &str,
        meta: &Meta,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), RemoteError> {
        if buf.is_empty() {
            return Ok(());
        }
        let mut reader = self.range_reader(name, meta, offset, buf.len() as u64)?;
        reader
            .read_exact(buf)
            .map_err(|e| self.read_error(name, e))?;
        self.finish(name, reader)
    }

    /// Reads the end of a body whose bytes were all taken, so that its
    /// connection goes back to the pool (ureq reuses a connection only once
    /// its body has been read to the end).
    fn finish(&self, name: &str, mut reader: impl Read) -> Result<(), RemoteError> {
        match reader.read(&mut [0; 1]) {
            Ok(0) => Ok(()),
            Ok(_) => Err(RemoteError::Refused(format!(
                "{name}: the store sent more than the range asked for"
            ))),
            Err(e) => Err(self.read_error(name, e)),
        }
    }

    /// Copies `len` bytes of `name` from `offset` to `out`, in one request,
    /// if the object is still `meta`; also feeds them to `md5`.
    pub fn copy_range(
        &self,
        name: &str,
        meta: &Meta,
        offset: u64,
        len: u64,
        out: &mut dyn std::io::Write,
        md5: &mut Md5,
    ) -> Result<(), RemoteError> {
        let mut reader = self.range_reader(name, meta, offset, len)?;
        let mut buf = vec![0; 256 << 10];
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            reader
                .read_exact(&mut buf[..want])
                .map_err(|e| self.read_error(name, e))?;
            md5.update(&buf[..want]);
            out.write_all(&buf[..want]).map_err(|e| {
                // Our disk, not the store: kept apart by the caller.
                RemoteError::Refused(format!("writing the copy of {name}: {e}"))
            })?;
            left -= want as u64;
        }
        self.finish(name, reader)
    }

    fn range_reader(
        &self,
        name: &str,
        meta: &Meta,
        offset: u64,
        len: u64,
    ) -> Result<impl Read, RemoteError> {
        let last = offset + len - 1;
        let mut headers = vec![("range", format!("bytes={offset}-{last}"))];
        if !meta.etag.is_empty() && !meta.etag.starts_with("W/") {
            headers.push(("if-match", meta.etag.clone()));
        }
        let response = self.send(Call {
            method: "GET",
            name,
            query: "",
            headers,
            body: b"",
        })?;
        let status = response.status().as_u16();
        let content_range = response
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        match status {
            206 => {}
            // The whole object, when it is one range long.
            200 if offset == 0 && len == meta.len => {}
            412 => {
                return Err(RemoteError::Changed(format!(
                    "{name}: changed in the store (its ETag is no longer {})",
                    meta.etag
                )))
            }
            416 => {
                return Err(RemoteError::Changed(format!(
                    "{name}: shorter in the store than the {} bytes it had",
                    meta.len
                )))
            }
            _ => return Err(self.refusal(name, status, &body_text(response))),
        }
        // `bytes first-last/total`: the total must still be the length.
        if status == 206 {
            let total = content_range.rsplit('/').next().unwrap_or_default();
            if total != meta.len.to_string()
                || !content_range.starts_with(&format!("bytes {offset}-{last}/"))
            {
                return Err(RemoteError::Changed(format!(
                    "{name}: the store answered `Content-Range: {content_range}` \
                     for bytes {offset}-{last} of {}",
                    meta.len
                )));
            }
        }
        self.fetched_requests.fetch_add(1, Ordering::Relaxed);
        self.fetched_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(response.into_body().into_reader())
    }

    /// Asks an S3 store to restore an archived object for a day. `Ok` when
    /// the restore was started or is already running.
    pub fn restore(&self, name: &str) -> Result<(), RemoteError> {
        let body = b"<RestoreRequest xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                     <Days>1</Days></RestoreRequest>";
        let response = self.send(Call {
            method: "POST",
            name,
            query: "restore=",
            headers: Vec::new(),
            body,
        })?;
        let status = response.status().as_u16();
        let text = body_text(response);
        match status {
            200 | 202 => Ok(()),
            409 if error_code(&text) == Some("RestoreAlreadyInProgress") => Ok(()),
            _ => Err(self.refusal(name, status, &text)),
        }
    }

    /// The names of the objects whose names start with `prefix`, at most
    /// [`MAX_LISTED`] (S3's ListObjectsV2); none from an HTTP server,
    /// which has no listing to ask for.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        let Address::S3(bucket) = &self.address else {
            return Ok(Vec::new());
        };
        // Parameters in name order, as the signature's canonical query.
        let query = format!(
            "list-type=2&max-keys={MAX_LISTED}&prefix={}",
            sigv4::encode_query_value(&format!("{}{prefix}", bucket.key_prefix))
        );
        let response = self.send(Call {
            method: "GET",
            name: "",
            query: &query,
            headers: Vec::new(),
            body: b"",
        })?;
        let status = response.status().as_u16();
        let text = body_text_up_to(response, LISTING_BYTES);
        if status != 200 {
            return Err(self.refusal(prefix, status, &text));
        }
        Ok(listed_keys(&text)
            .filter_map(|key| {
                key.strip_prefix(bucket.key_prefix.as_str())
                    .map(str::to_string)
            })
            .take(MAX_LISTED)
            .collect())
    }

    /// Object data fetched since the last call: (bytes, requests).
    pub fn take_fetched(&self) -> (u64, u64) {
        (
            self.fetched_bytes.swap(0, Ordering::Relaxed),
            self.fetched_requests.swap(0, Ordering::Relaxed),
        )
    }

    fn send(&self, call: Call) -> Result<http::Response<ureq::Body>, RemoteError> {
        let (url, headers) = self.prepare(&call);
        let mut request = http::Request::builder().method(call.method).uri(&url);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(call.body.to_vec())
            .map_err(|e| RemoteError::Refused(format!("{}: {e}", call.name)))?;
        self.agent
            .run(request)
            .map_err(|e| transport_error(call.name, &url, e))
    }

    /// The URL of `call` and its headers, signed for S3.
    fn prepare(&self, call: &Call) -> (String, Vec<(&'static str, String)>) {
        let mut headers = call.headers.clone();
        match &self.address {
            Address::Http { base } => {
                let url = format!("{base}{}", sigv4::encode_path(call.name));
                (url, headers)
            }
            Address::S3(b) => {
                let key = if call.name.is_empty() {
                    String::new()
                } else {
                    format!("{}{}", b.key_prefix, call.name)
                };
                let (scheme, authority) = b
                    .endpoint
                    .split_once("://")
                    .unwrap_or(("https", &b.endpoint));
                let (host, path) = if b.path_style {
                    (authority.to_string(), format!("/{}/{}", b.bucket, key))
                } else {
                    (format!("{}.{authority}", b.bucket), format!("/{key}"))
                };
                let path = sigv4::encode_path(&path);
                let payload = if call.body.is_empty() {
                    sigv4::EMPTY_SHA256.to_string()
                } else {
                    sigv4::sha256_hex(call.body)
                };
                let signed: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let auth = sigv4::sign(
                    &sigv4::Request {
                        method: call.method,
                        host: &host,
                        path: &path,
                        query: call.query,
                        headers: &signed,
                        payload_sha256: &payload,
                    },
                    &b.credentials,
                    &b.region,
                    &sigv4::amz_date(now),
                );
                headers.extend(auth);
                let query = if call.query.is_empty() {
                    String::new()
                } else {
                    format!("?{}", call.query.trim_end_matches('='))
                };
                (format!("{scheme}://{host}{path}{query}"), headers)
            }
        }
    }

    /// The error for a status other than the one asked for.
    fn refusal(&self, name: &str, status: u16, body: &str) -> RemoteError {
        let code = error_code(body).unwrap_or_default();
        let reason = if code.is_empty() {
            format!("{name}: the store answered {status}")
        } else {
            format!("{name}: the store answered {status} {code}")
        };
        match (status, code) {
            (403, "InvalidObjectState") => RemoteError::Archived(reason),
            (403 | 404 | 410, _) => RemoteError::NotFound(reason),
            (412, _) => RemoteError::Changed(reason),
            (500..=599, _) => RemoteError::Down(reason),
            _ => RemoteError::Refused(reason),
        }
    }

    fn read_error(&self, name: &str, e: std::io::Error) -> RemoteError {
        if e.kind() == std::io::ErrorKind::TimedOut {
            RemoteError::TimedOut(format!("{name}: the store stopped sending ({e})"))
        } else {
            RemoteError::Down(format!("{name}: reading from the store: {e}"))
        }
    }
}

fn transport_error(name: &str, url: &str, e: ureq::Error) -> RemoteError {
    let reason = format!("{name}: {url}: {e}");
    match e {
        ureq::Error::Timeout(_) => RemoteError::TimedOut(reason),
        ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => {
            RemoteError::TimedOut(reason)
        }
        _ => RemoteError::Down(reason),
    }
}

/// The start of an error answer's body, for its S3 error code.
/// Most names one listing gives.
pub const MAX_LISTED: usize = 1000;

/// The `Key`s of a ListObjectsV2 answer, their XML escapes undone.
fn listed_keys(xml: &str) -> impl Iterator<Item = String> + '_ {
    xml.split("<Key>").skip(1).filter_map(|rest| {
        let key = rest.split_once("</Key>")?.0;
        Some(
            key.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        )
    })
}

/// Bytes of a listing read, at most: a thousand keys with their fields.
const LISTING_BYTES: u64 = 1 << 20;

fn body_text(response: http::Response<ureq::Body>) -> String {
    body_text_up_to(response, 16 << 10)
}

fn body_text_up_to(response: http::Response<ureq::Body>, limit: u64) -> String {
    let mut text = String::new();
    let _ = response
        .into_body()
        .into_reader()
        .take(limit)
        .read_to_string(&mut text);
    text
}

/// The `<Code>` of an S3 error document.
fn error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let len = body[start..].find("</Code>")?;
    Some(&body[start..start + len])
}

/// The MD5 an ETag stands for, when it is one: S3 gives a plain MD5 for
/// objects put in one part (`"<32 hex>"`), and `"<hex>-<parts>"` otherwise.
pub fn etag_md5(etag: &str) -> Option<String> {
    let inner = etag.strip_prefix('"')?.strip_suffix('"')?;
    (inner.len() == 32 && inner.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| inner.to_ascii_lowercase())
}

pub fn md5_hex(md5: Md5) -> String {
    crate::cache::hex(&md5.finalize())
}

pub use md5::Md5 as Md5Hasher;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_keys_are_read_with_their_escapes_undone() {
        let xml = "<ListBucketResult><Name>b</Name><Prefix>a/f.</Prefix>\
                   <Contents><Key>a/f.en.vtt</Key><Size>9</Size></Contents>\
                   <Contents><Key>a/f.&lt;x&gt; &amp; &quot;y&quot;.srt</Key></Contents>\
                   </ListBucketResult>";
        let keys: Vec<String> = listed_keys(xml).collect();
        assert_eq!(keys, ["a/f.en.vtt", "a/f.<x> & \"y\".srt"]);
        assert_eq!(listed_keys("<Key>unterminated").count(), 0);
    }

    #[test]
    fn error_codes_and_etags() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>InvalidObjectState</Code></Error>";
        assert_eq!(error_code(xml), Some("InvalidObjectState"));
        assert_eq!(error_code("<html>"), None);
        assert_eq!(
            etag_md5("\"9E107D9D372BB6826BD81D3542A419D6\"").as_deref(),
            Some("9e107d9d372bb6826bd81d3542a419d6")
        );
        assert_eq!(etag_md5("\"9e107d9d372bb6826bd81d3542a419d6-3\""), None);
        assert_eq!(etag_md5("\"5f3e-1a2b\""), None);
    }
}
