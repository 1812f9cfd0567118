//! The HTTP details a CDN origin needs (RFC 9110): byte ranges and
//! conditional requests.

use std::ops::Range;

use crate::dates::parse_http_date;

/// What a `Range` header asks of a body of `len` bytes (RFC 9110 14.2).
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range, or one we answer with the whole body (several ranges, a
    /// unit other than bytes, a malformed header: all allowed to be ignored).
    Whole,
    Partial(Range<u64>),
    /// 416.
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let range = match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) if n > 0 => len.saturating_sub(n)..len,
        (true, _, Some(_)) => return RangeRequest::Unsatisfiable,
        (false, Some(a), None) if last.trim().is_empty() => a..len,
        (false, Some(a), Some(b)) if a <= b => a..b.saturating_add(1).min(len),
        _ => return RangeRequest::Whole,
    };
    if range.start >= len {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Partial(range)
    }
}

/// Whether a conditional GET/HEAD gets 304 (RFC 9110 13.2.2): If-None-Match
/// decides when present, else If-Modified-Since.
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    etag: &str,
    last_modified: i64,
) -> bool {
    if let Some(tags) = if_none_match {
        return tags
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == etag);
    }
    if_modified_since
        .and_then(parse_http_date)
        .is_some_and(|since| last_modified <= since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Partial(0..10));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Partial(90..100));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Partial(90..100));
        assert_eq!(parse_range(Some("bytes=-500"), 100), Partial(0..100));
        assert_eq!(parse_range(Some("bytes=50-5000"), 100), Partial(50..100));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Whole);
        assert_eq!(parse_range(Some("bytes=9-1"), 100), Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), Whole);
    }

    #[test]
    fn conditionals() {
        assert!(not_modified(Some("\"abc\""), None, "\"abc\"", 0));
        assert!(not_modified(Some("\"x\", W/\"abc\""), None, "\"abc\"", 0));
        assert!(!not_modified(
            Some("\"x\""),
            Some("Sun, 06 Nov 1994 08:49:37 GMT"),
            "\"abc\"",
            0
        ));
        assert!(not_modified(
            None,
            Some("Sun, 06 Nov 1994 08:49:37 GMT"),
            "\"abc\"",
            784_111_777
        ));
        assert!(!not_modified(
            None,
            Some("Sun, 06 Nov 1994 08:49:37 GMT"),
            "\"abc\"",
            784_111_778
        ));
    }
}
