//! The Akamai MSOD URL grammar (what follows the `/i/` prefix):
//!
//! ```text
//! <path>/<file>/master.m3u8                     one file, one rendition (0)
//! <path>/<file>/index_0_<kind>.m3u8             its media playlist
//! <path>/<file>/segment<K>_0_<kind>.ts          its segment K (from 1)
//! <dir>/<prefix>,<l0>,<l1>,...,<suffix>.csmil/master.m3u8
//!                                               renditions N = files <dir>/<prefix><lN><suffix>
//! <dir>/<...>.csmil/index_<N>_<kind>.m3u8, .../segment<K>_<N>_<kind>.ts
//! <...>/key_<ID>_<N>.key                        rendition N's key, of secret ID (under /cmaf/: cbcs, as a ClearKey JWK set)
//! <...>/segment<K>_<N>_<kind>_<ID>.ts           a protected stream's segment, encrypted with that key
//! <path>/<file>/index.m3u8, .../segment-<K>.ts  the predecessor's names: rendition 0, all its tracks
//! <...>/iframes_<N>_<kind>.m3u8                 rendition N's I-frame playlist (byte ranges of its segments)
//! <...>/subtitles_<tag>.m3u8                    a subtitle rendition (tag: en, pt-br, de-forced, und)
//! <...>/subtitles<K>_<tag>.vtt                  its segment K, WebVTT, aligned with the media's
//! <...>/subtitles_<tag>.vtt                     the whole track as one WebVTT file (DASH)
//! ```
//!
//! Subtitles come from sidecar files beside the sources: those of
//! [`Request::subtitle_base`].
//!
//! `<kind>` is `av`, `a` or `v`: the file's tracks, or one of them; `a2`,
//! `a3`... are its other audio tracks. Paths come out percent-decoded and checked:
//! no `..` or `.` component, no backslash or NUL, nothing absolute.

use crate::packager::fmp4::TrackKind;

/// Most renditions a csmil URL may list. A master lists each of them, and
/// each is a source to resolve and parse; real ladders have under a dozen.
pub const MAX_RENDITIONS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `master.m3u8`: the HLS master (TS under `/i/`, fMP4 under `/cmaf/`).
    Master,
    /// CMAF: `manifest.mpd`, the DASH manifest.
    Manifest,
    /// CMAF: `init_<N>_<track>.mp4`, the init segment of a track
    /// (`init_<N>_<track>_<ID>.mp4` when protected with the secret ID).
    Init {
        n: usize,
        track: TrackKind,
        key_id: Option<String>,
    },
    /// CMAF: `seg<K>_<N>_<track>.m4s`, media segment K (1-based) of a track
    /// (`seg<K>_<N>_<track>_<ID>.m4s` when protected).
    Fragment {
        k: usize,
        n: usize,
        track: TrackKind,
        key_id: Option<String>,
    },
    /// CMAF: `trick<K>_<N>_v.m4s`, the trick-play fragment of segment K
    /// (1-based): its first picture alone.
    TrickFragment {
        k: usize,
        n: usize,
    },
    MediaPlaylist {
        n: usize,
        kind: String,
    },
    /// `iframes_<N>_<kind>.m3u8`: rendition N's I-frame playlist.
    IFramePlaylist {
        n: usize,
        kind: String,
    },
    /// `k` as in the URL (1-based); `segment<K>_<N>_<kind>_<ID>.ts` when
    /// protected with the secret ID (the name says which key encrypts it,
    /// so that a rotated secret never changes the bytes of a URL).
    Segment {
        k: usize,
        n: usize,
        kind: String,
        key_id: Option<String>,
    },
    /// `key_<ID>_<N>.key`: the AES-128 key of rendition N's segments, made
    /// with the secret named ID (1 to 16 letters and digits).
    Key {
        n: usize,
        key_id: String,
    },
    /// `subtitles_<tag>.m3u8`: the subtitle rendition of a sidecar (see
    /// [`crate::packager::subtitles::Sidecar::tag`]).
    SubtitlePlaylist {
        tag: String,
    },
    /// `subtitles<K>_<tag>.vtt`: its segment K (1-based).
    SubtitleSegment {
        k: usize,
        tag: String,
    },
    /// `subtitles_<tag>.vtt`: the whole track as one WebVTT file.
    SubtitleFile {
        tag: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Source paths relative to the media root; rendition N is `sources[N]`.
    pub sources: Vec<String>,
    /// Where the sources' sidecar subtitles are: files named this, then
    /// `[.<lang>][.forced].vtt` or `.srt`. A single file's path without
    /// its extension; for a csmil set, its prefix and suffix (without the
    /// extension) joined, with the separators they end in (`_`, `-`, `.`)
    /// left off: `film_,480,720,.mp4.csmil` gives `film`.
    pub subtitle_base: String,
    pub target: Target,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL of ours, or a malformed one: 400.
    #[error("bad URL: {0}")]
    Malformed(String),
    /// Well-formed, but names nothing we serve (a raw file, rendition N of a
    /// single file): 404.
    #[error("not found: {0}")]
    NotFound(String),
}

/// Parses the part of an MSOD URL path after the prefix (no query string).
pub fn parse(path: &str) -> Result<Request, UrlError> {
    parse_with(path, parse_target)
}

/// Parses the part of a CMAF URL path after its prefix: the same source
/// paths, with the names of [`crate::packager::cmaf`]. A media playlist's
/// `kind` is then `v` or `a`, its track.
pub fn parse_cmaf(path: &str) -> Result<Request, UrlError> {
    parse_with(path, parse_cmaf_target)
}

fn parse_with(path: &str, parse_target: fn(&str) -> Option<Target>) -> Result<Request, UrlError> {
    let (dir, last) = path
        .rsplit_once('/')
        .ok_or_else(|| UrlError::NotFound(format!("{path:?} names no playlist or segment")))?;
    let target = parse_target(last)
        .ok_or_else(|| UrlError::NotFound(format!("{last:?} is not a playlist or segment name")))?;
    let components = dir
        .split('/')
        .map(decode_component)
        .collect::<Result<Vec<_>, _>>()?;
    let (name, parent) = components.split_last().expect("split yields one item");
    let (sources, subtitle_base) = match name.strip_suffix(".csmil") {
        Some(csmil) => {
            let (prefix, suffix) = csmil
                .split_once(',')
                .zip(csmil.rsplit_once(','))
                .map_or(("", ""), |((prefix, _), (_, suffix))| (prefix, suffix));
            // The suffix is the extension, or ends with it.
            let suffix = suffix.rsplit_once('.').map_or(suffix, |(head, _)| head);
            let stem = format!("{prefix}{suffix}");
            let stem = stem.trim_end_matches(['_', '-', '.']);
            let base = parent
                .iter()
                .map(String::as_str)
                .chain([stem])
                .collect::<Vec<_>>()
                .join("/");
            (csmil_sources(parent, csmil)?, base)
        }
        None => {
            let path = components.join("/");
            let base = without_extension(&path).to_string();
            (vec![path], base)
        }
    };
    let n = match &target {
        Target::Master
        | Target::Manifest
        | Target::SubtitlePlaylist { .. }
        | Target::SubtitleSegment { .. }
        | Target::SubtitleFile { .. } => 0,
        Target::MediaPlaylist { n, .. }
        | Target::IFramePlaylist { n, .. }
        | Target::Segment { n, .. }
        | Target::Init { n, .. }
        | Target::Fragment { n, .. }
        | Target::TrickFragment { n, .. }
        | Target::Key { n, .. } => *n,
    };
    if n >= sources.len() {
        return Err(UrlError::NotFound(format!(
            "rendition {n} of {} in {path:?}",
            sources.len()
        )));
    }
    Ok(Request {
        sources,
        subtitle_base,
        target,
    })
}

/// `path` without the extension of its last component, if it has one.
fn without_extension(path: &str) -> &str {
    let name_at = path.rfind('/').map_or(0, |at| at + 1);
    match path[name_at..].rfind('.') {
        Some(dot) if dot > 0 => &path[..name_at + dot],
        _ => path,
    }
}

/// `subtitles_<tag>.m3u8`, `subtitles<K>_<tag>.vtt`, `subtitles_<tag>.vtt`.
fn parse_subtitles(name: &str) -> Option<Target> {
    use crate::packager::subtitles::parse_tag;
    let rest = name.strip_prefix("subtitles")?;
    if let Some(tag) = rest.strip_prefix('_').and_then(|r| r.strip_suffix(".m3u8")) {
        parse_tag(tag)?;
        return Some(Target::SubtitlePlaylist {
            tag: tag.to_string(),
        });
    }
    let rest = rest.strip_suffix(".vtt")?;
    if let Some(tag) = rest.strip_prefix('_') {
        parse_tag(tag)?;
        return Some(Target::SubtitleFile {
            tag: tag.to_string(),
        });
    }
    let (k, tag) = rest.split_once('_')?;
    let k = number(k)?;
    parse_tag(tag)?;
    (k >= 1).then(|| Target::SubtitleSegment {
        k,
        tag: tag.to_string(),
    })
}

fn parse_target(name: &str) -> Option<Target> {
    match name {
        "master.m3u8" => return Some(Target::Master),
        // The predecessor's names: the media playlist of rendition 0, all
        // its tracks (`kind` empty: the file's own), and its segments.
        "index.m3u8" => {
            return Some(Target::MediaPlaylist {
                n: 0,
                kind: String::new(),
            })
        }
        _ => {}
    }
    if let Some(k) = name
        .strip_prefix("segment-")
        .and_then(|r| r.strip_suffix(".ts"))
    {
        let k = number(k)?;
        return (k >= 1).then_some(Target::Segment {
            k,
            n: 0,
            kind: String::new(),
            key_id: None,
        });
    }
    if let Some(rest) = name
        .strip_prefix("index_")
        .and_then(|r| r.strip_suffix(".m3u8"))
    {
        let (n, kind) = rest.split_once('_')?;
        return Some(Target::MediaPlaylist {
            n: number(n)?,
            kind: kind_of(kind)?,
        });
    }
    if let Some(rest) = name
        .strip_prefix("iframes_")
        .and_then(|r| r.strip_suffix(".m3u8"))
    {
        let (n, kind) = rest.split_once('_')?;
        return Some(Target::IFramePlaylist {
            n: number(n)?,
            kind: kind_of(kind)?,
        });
    }
    if name.starts_with("key_") {
        return parse_key(name);
    }
    if name.starts_with("subtitles") {
        return parse_subtitles(name);
    }
    let rest = name.strip_prefix("segment")?.strip_suffix(".ts")?;
    let mut parts = rest.splitn(4, '_');
    let (k, n, kind) = (
        number(parts.next()?)?,
        number(parts.next()?)?,
        kind_of(parts.next()?)?,
    );
    let key_id = match parts.next() {
        Some(id) => Some(key_id_of(id)?),
        None => None,
    };
    (k >= 1).then_some(Target::Segment { k, n, kind, key_id })
}

/// MSOD's bitrate filter of a master (`?b=`): comma-separated items, each
/// a bitrate (`700`), a range (`200-700`) or an open range (`300-`), in
/// kbit/s. A variant is kept when its average bitrate is in a range, or
/// within 10 % (at least 100 kbit/s) of a listed bitrate: the bitrates a
/// file's label names are nominal, and the measured ones differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitrateFilter(Vec<(u64, u64)>);

/// Items a `b=` may list, at most.
const MAX_FILTER_ITEMS: usize = 32;

impl BitrateFilter {
    /// The filter of a master's query string, if it has `b=`.
    pub fn of_query(query: &str) -> Result<Option<BitrateFilter>, UrlError> {
        let Some(value) = query.split('&').find_map(|pair| pair.strip_prefix("b=")) else {
            return Ok(None);
        };
        let bad = || {
            UrlError::Malformed(format!(
                "b={value}: bitrates in kbit/s, as 200,700 or 200-700 or 300-"
            ))
        };
        let items: Vec<&str> = value.split(',').collect();
        if items.len() > MAX_FILTER_ITEMS {
            return Err(bad());
        }
        let kbps = |s: &str| -> Result<u64, UrlError> {
            if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let mut ranges = Vec::with_capacity(items.len());
        for item in items {
            let range = match item.split_once('-') {
                Some((lo, "")) => (kbps(lo)?, u64::MAX),
                Some((lo, hi)) => (kbps(lo)?, kbps(hi)?),
                None => {
                    let at = kbps(item)?;
                    let slack = (at / 10).max(100);
                    (at.saturating_sub(slack), at + slack)
                }
            };
            if range.0 > range.1 {
                return Err(bad());
            }
            ranges.push(range);
        }
        ranges.sort_unstable();
        ranges.dedup();
        Ok(Some(BitrateFilter(ranges)))
    }

    /// Whether a variant of `bits_per_second` (average) is kept.
    pub fn keeps(&self, bits_per_second: u64) -> bool {
        let kbps = (bits_per_second + 500) / 1000;
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&kbps))
    }

    /// The same filter as text, whatever order and form it was given in
    /// (for cache keys).
    pub fn canonical(&self) -> String {
        let items: Vec<String> = self.0.iter().map(|(lo, hi)| format!("{lo}-{hi}")).collect();
        items.join(",")
    }
}

/// A secret's id in a name: 1 to 16 letters and digits.
fn key_id_of(id: &str) -> Option<String> {
    let fits = (1..=16).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
    fits.then(|| id.to_string())
}

/// `name` (`<stem>.<ext>`) of an object protected with the secret
/// `key_id`: `<stem>_<ID>.<ext>`; unchanged for a clear one.
pub fn keyed(name: String, key_id: Option<&str>) -> String {
    match (key_id, name.rsplit_once('.')) {
        (Some(id), Some((stem, ext))) => format!("{stem}_{id}.{ext}"),
        _ => name,
    }
}

/// `key_<ID>_<N>.key`.
fn parse_key(name: &str) -> Option<Target> {
    let rest = name.strip_prefix("key_")?.strip_suffix(".key")?;
    let (key_id, n) = rest.split_once('_')?;
    Some(Target::Key {
        n: number(n)?,
        key_id: key_id_of(key_id)?,
    })
}

fn parse_cmaf_target(name: &str) -> Option<Target> {
    match name {
        "master.m3u8" => return Some(Target::Master),
        "manifest.mpd" => return Some(Target::Manifest),
        _ if name.starts_with("key_") => return parse_key(name),
        _ if name.starts_with("subtitles") => return parse_subtitles(name),
        _ => {}
    }
    // `<N>_<track>`, then `_<ID>` where a secret's id may follow.
    let track_of = |rest: &str| -> Option<(usize, TrackKind, Option<String>)> {
        let mut parts = rest.splitn(3, '_');
        let n = number(parts.next()?)?;
        let track = TrackKind::from_suffix(parts.next()?)?;
        let key_id = match parts.next() {
            Some(id) => Some(key_id_of(id)?),
            None => None,
        };
        Some((n, track, key_id))
    };
    if let Some(rest) = name
        .strip_prefix("index_")
        .and_then(|r| r.strip_suffix(".m3u8"))
    {
        let (n, track, None) = track_of(rest)? else {
            return None;
        };
        return Some(Target::MediaPlaylist {
            n,
            kind: track.suffix(),
        });
    }
    if let Some(rest) = name
        .strip_prefix("iframes_")
        .and_then(|r| r.strip_suffix(".m3u8"))
    {
        let (n, TrackKind::Video, None) = track_of(rest)? else {
            return None;
        };
        return Some(Target::IFramePlaylist {
            n,
            kind: TrackKind::Video.suffix(),
        });
    }
    if let Some(rest) = name
        .strip_prefix("trick")
        .and_then(|r| r.strip_suffix(".m4s"))
    {
        let (k, rest) = rest.split_once('_')?;
        let k = number(k)?;
        let (n, TrackKind::Video, None) = track_of(rest)? else {
            return None;
        };
        return (k >= 1).then_some(Target::TrickFragment { k, n });
    }
    if let Some(rest) = name
        .strip_prefix("init_")
        .and_then(|r| r.strip_suffix(".mp4"))
    {
        let (n, track, key_id) = track_of(rest)?;
        return Some(Target::Init { n, track, key_id });
    }
    let rest = name.strip_prefix("seg")?.strip_suffix(".m4s")?;
    let (k, rest) = rest.split_once('_')?;
    let k = number(k)?;
    let (n, track, key_id) = track_of(rest)?;
    (k >= 1).then_some(Target::Fragment {
        k,
        n,
        track,
        key_id,
    })
}

fn number(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `av`, `v`, `a`, or `a2`... for another audio track of the file.
fn kind_of(s: &str) -> Option<String> {
    let other_audio = || TrackKind::from_suffix(s).is_some_and(|t| t != TrackKind::Audio(0));
    (matches!(s, "av" | "a" | "v") || other_audio()).then(|| s.to_string())
}

fn csmil_sources(parent: &[String], csmil: &str) -> Result<Vec<String>, UrlError> {
    let parts: Vec<&str> = csmil.split(',').collect();
    if parts.len() < 3 {
        return Err(UrlError::Malformed(format!(
            "{csmil:?}.csmil lists no renditions"
        )));
    }
    if parts.len() - 2 > MAX_RENDITIONS {
        return Err(UrlError::Malformed(format!(
            "a csmil URL lists {} renditions, at most {MAX_RENDITIONS}",
            parts.len() - 2
        )));
    }
    let (prefix, suffix) = (parts[0], parts[parts.len() - 1]);
    parts[1..parts.len() - 1]
        .iter()
        .map(|label| {
            let file = format!("{prefix}{label}{suffix}");
            check_component(&file)?;
            Ok(parent
                .iter()
                .map(String::as_str)
                .chain([file.as_str()])
                .collect::<Vec<_>>()
                .join("/"))
        })
        .collect()
}

/// Percent-decodes one path component and checks it.
fn decode_component(raw: &str) -> Result<String, UrlError> {
    let text = percent_decoded(raw)
        .ok_or_else(|| UrlError::Malformed(format!("bad percent-encoding in {raw:?}")))?;
    check_component(&text)?;
    Ok(text)
}

/// `text` fit for one component of a URI path (RFC 3986 3.3): every byte
/// but the unreserved ones and a few sub-delimiters as `%XX`.
pub fn percent_encoded(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `raw` with its `%XX` escapes decoded (RFC 3986 2.1); `None` for a bad
/// escape or bytes that are not UTF-8.
pub fn percent_decoded(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn check_component(c: &str) -> Result<(), UrlError> {
    if c.is_empty() || c == "." || c == ".." || c.contains(['/', '\\', '\0']) {
        return Err(UrlError::Malformed(format!(
            "path component {c:?} is not allowed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(k: usize, n: usize, kind: &str) -> Target {
        Target::Segment {
            k,
            n,
            kind: kind.into(),
            key_id: None,
        }
    }

    #[test]
    fn protected_names_carry_their_secrets_id() {
        assert_eq!(
            parse("f.mp4/segment3_0_av_k2.ts").unwrap().target,
            Target::Segment {
                k: 3,
                n: 0,
                kind: "av".into(),
                key_id: Some("k2".into())
            }
        );
        assert_eq!(
            parse_cmaf("f.mp4/trick3_0_v.m4s").unwrap().target,
            Target::TrickFragment { k: 3, n: 0 }
        );
        assert_eq!(
            parse_cmaf("f.mp4/iframes_0_v.m3u8").unwrap().target,
            Target::IFramePlaylist {
                n: 0,
                kind: "v".into()
            }
        );
        for junk in [
            "trick0_0_v.m4s",
            "trick1_0_a.m4s",
            "trick1_0_v_7.m4s",
            "iframes_0_a.m3u8",
        ] {
            assert!(parse_cmaf(&format!("f.mp4/{junk}")).is_err(), "{junk}");
        }
        assert_eq!(
            parse_cmaf("f.mp4/seg3_0_v_7.m4s").unwrap().target,
            Target::Fragment {
                k: 3,
                n: 0,
                track: TrackKind::Video,
                key_id: Some("7".into())
            }
        );
        assert_eq!(
            parse_cmaf("f.mp4/init_0_a_7.mp4").unwrap().target,
            Target::Init {
                n: 0,
                track: TrackKind::Audio(0),
                key_id: Some("7".into())
            }
        );
        assert_eq!(
            keyed(crate::packager::hls::segment_name(3, 0, "av"), Some("k2")),
            "segment3_0_av_k2.ts"
        );
        for bad in [
            "f.mp4/segment3_0_av_.ts",
            "f.mp4/segment3_0_av_a-b.ts",
            "f.mp4/segment3_0_av_12345678901234567.ts",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse_cmaf("f.mp4/index_0_v_7.m3u8").is_err());
    }

    #[test]
    fn single_file_urls() {
        let r = parse("videos/film.mp4/master.m3u8").unwrap();
        assert_eq!(r.sources, ["videos/film.mp4"]);
        assert_eq!(r.target, Target::Master);
        let r = parse("film.mp4/index_0_a.m3u8").unwrap();
        assert_eq!(
            r.target,
            Target::MediaPlaylist {
                n: 0,
                kind: "a".into()
            }
        );
        assert_eq!(
            parse("a/b c.mp4/segment12_0_av.ts").unwrap().target,
            seg(12, 0, "av")
        );
        assert_eq!(
            parse("a/b%20c.mp4/master.m3u8").unwrap().sources,
            ["a/b c.mp4"]
        );
    }

    #[test]
    fn csmil_urls_with_empty_labels() {
        let r = parse("dir/a_,1500k,,600k,.mp4.csmil/master.m3u8").unwrap();
        assert_eq!(
            r.sources,
            ["dir/a_1500k.mp4", "dir/a_.mp4", "dir/a_600k.mp4"]
        );
        let r = parse("x,1,2,.mp4.csmil/segment3_2_av.ts");
        assert_eq!(
            r.unwrap_err(),
            UrlError::NotFound("rendition 2 of 2 in \"x,1,2,.mp4.csmil/segment3_2_av.ts\"".into())
        );
        assert_eq!(
            parse("x,1,2,.mp4.csmil/segment3_1_v.ts").unwrap().target,
            seg(3, 1, "v")
        );
    }

    #[test]
    fn subtitle_names_and_where_their_sidecars_are() {
        let base = |path: &str| parse(path).unwrap().subtitle_base;
        assert_eq!(base("films/film.mp4/master.m3u8"), "films/film");
        assert_eq!(
            base("films/film_,480,720,.mp4.csmil/master.m3u8"),
            "films/film"
        );
        assert_eq!(base("film-,a,b,-hd.mp4.csmil/master.m3u8"), "film--hd");
        assert_eq!(base("films/noext/master.m3u8"), "films/noext");
        let target = |name: &str| parse(&format!("f.mp4/{name}")).map(|r| r.target);
        let tag = |t: &str| t.to_string();
        assert_eq!(
            target("subtitles_pt-br-forced.m3u8"),
            Ok(Target::SubtitlePlaylist {
                tag: tag("pt-br-forced")
            })
        );
        assert_eq!(
            target("subtitles12_en.vtt"),
            Ok(Target::SubtitleSegment {
                k: 12,
                tag: tag("en")
            })
        );
        assert_eq!(
            target("subtitles_und.vtt"),
            Ok(Target::SubtitleFile { tag: tag("und") })
        );
        assert_eq!(
            parse_cmaf("f.mp4/subtitles_en.m3u8").map(|r| r.target),
            Ok(Target::SubtitlePlaylist { tag: tag("en") })
        );
        for bad in [
            "subtitles0_en.vtt",
            "subtitles_EN.m3u8",
            "subtitles_e.m3u8",
            "subtitles_en.srt",
            "subtitles1_.vtt",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn traversal_and_junk_are_rejected() {
        for bad in [
            "../etc/passwd/master.m3u8",
            "a/%2e%2e/b.mp4/master.m3u8",
            "a/%2E%2E/b.mp4/master.m3u8",
            "a//b.mp4/master.m3u8",
            "/abs.mp4/master.m3u8",
            "a/b%2fc.mp4/master.m3u8",
            "a%5c..%5cb.mp4/master.m3u8",
            "a/b%00.mp4/master.m3u8",
            "a/b%zz.mp4/master.m3u8",
            "dir/,..,.csmil/master.m3u8",
            "dir/x.csmil/master.m3u8",
            &format!(
                "dir/a_{},.mp4.csmil/master.m3u8",
                ",x".repeat(MAX_RENDITIONS + 1)
            ),
        ] {
            assert!(
                matches!(parse(bad), Err(UrlError::Malformed(_))),
                "{bad}: {:?}",
                parse(bad)
            );
        }
        for missing in [
            "film.mp4",
            "dir/film.mp4",
            "film.mp4/index_1_av.m3u8",
            "film.mp4/segment0_0_av.ts",
            "film.mp4/segment1_0_xx.ts",
            "film.mp4/index_0_av.m3u",
            "film.mp4/segment1_0_av.ts.bak",
        ] {
            assert!(
                matches!(parse(missing), Err(UrlError::NotFound(_))),
                "{missing}: {:?}",
                parse(missing)
            );
        }
    }
}
