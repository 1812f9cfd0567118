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

/// What a master's query string asks of it:
///
/// - MSOD's `b=`: comma-separated items, each a bitrate (`700`), a range
///   (`200-700`) or an open range (`300-`), in kbit/s; a variant is kept
///   when its average bitrate is in a range, or within 10 % (at least 100
///   kbit/s) of a listed bitrate: the bitrates a file's label names are
///   nominal, and the measured ones differ;
/// - Akamai's manifest personalization, as players behind its CDN send
///   it: `b-in=100,200,400` keeps the variants within 100 kbit/s of a
///   listed bitrate, `b-in-range=100-400,1000-4000` those in a range, and
///   `__b__=800` lists first the variant nearest 800 kbit/s (within 100);
/// - `audio-only` or `video-only` (bare, `=1` or `=true`; `=0` or
///   `=false` for off): each kept rendition's audio alone
///   (`index_<N>_a.m3u8`), or its video alone (`index_<N>_v.m3u8`).
///
/// Bitrates are those of the renditions with all their tracks. Given
/// together, a rendition is kept when any bitrate filter keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterFilter {
    /// Kept average bitrates, kbit/s, inclusive; empty: all.
    ranges: Vec<(u64, u64)>,
    /// The bitrate whose variant is listed first (`__b__`), kbit/s.
    preferred: Option<u64>,
    /// Which tracks of each rendition its variant has.
    pub tracks: Tracks,
}

/// The tracks of a master's variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracks {
    All,
    AudioOnly,
    VideoOnly,
}

impl Tracks {
    /// The media playlist suffix of a variant of these tracks, or `None`
    /// for all of a rendition's.
    pub fn kind_suffix(self) -> Option<&'static str> {
        match self {
            Tracks::All => None,
            Tracks::AudioOnly => Some("a"),
            Tracks::VideoOnly => Some("v"),
        }
    }
}

/// Items a filter may list, at most.
const MAX_FILTER_ITEMS: usize = 32;

/// How far from a listed bitrate `b-in` and `__b__` reach, kbit/s.
const PERSONALIZATION_SLACK_KBPS: u64 = 100;

/// A kbit/s range read from one item of a filter, `None` when malformed.
type Range = Option<(u64, u64)>;

/// How one item of a bitrate filter reads.
type ItemReader = fn(&str) -> Range;

/// The bitrate filters a master takes: name, the form it is written in
/// (for errors), and how one item reads.
const BITRATE_FILTERS: [(&str, &str, ItemReader); 3] = [
    ("b", "200,700 or 200-700 or 300-", msod_item),
    ("b-in", "100,200,400", |item| {
        let at = kbps(item)?;
        Some((
            at.saturating_sub(PERSONALIZATION_SLACK_KBPS),
            at + PERSONALIZATION_SLACK_KBPS,
        ))
    }),
    ("b-in-range", "100-400,1000-4000", |item| {
        let (lo, hi) = item.split_once('-')?;
        Some((kbps(lo)?, kbps(hi)?))
    }),
];

/// One item of MSOD's `b=`.
fn msod_item(item: &str) -> Range {
    match item.split_once('-') {
        Some((lo, "")) => Some((kbps(lo)?, u64::MAX)),
        Some((lo, hi)) => Some((kbps(lo)?, kbps(hi)?)),
        None => {
            let at = kbps(item)?;
            let slack = (at / 10).max(100);
            Some((at.saturating_sub(slack), at + slack))
        }
    }
}

impl MasterFilter {
    /// The filter of a master's query string, if it has one.
    pub fn of_query(query: &str) -> Result<Option<MasterFilter>, UrlError> {
        let value_of = |name: &str| {
            query
                .split('&')
                .find_map(|pair| match pair.strip_prefix(name)? {
                    "" => Some(""),
                    rest => rest.strip_prefix('='),
                })
        };
        let mut ranges = Vec::new();
        let mut any = false;
        for (name, form, read) in BITRATE_FILTERS {
            let Some(value) = value_of(name) else {
                continue;
            };
            any = true;
            let bad =
                || UrlError::Malformed(format!("{name}={value}: bitrates in kbit/s, as {form}"));
            for item in value.split(',') {
                match read(item) {
                    Some((lo, hi)) if lo <= hi && ranges.len() < MAX_FILTER_ITEMS => {
                        ranges.push((lo, hi))
                    }
                    _ => return Err(bad()),
                }
            }
        }
        let preferred = match value_of("__b__") {
            Some(value) => Some(kbps(value).ok_or_else(|| {
                UrlError::Malformed(format!("__b__={value}: a bitrate in kbit/s, as 800"))
            })?),
            None => None,
        };
        let switch = |name: &str| match value_of(name) {
            None | Some("0" | "false") => Ok(false),
            Some("" | "1" | "true") => Ok(true),
            Some(other) => Err(UrlError::Malformed(format!(
                "{name}={other}: 1 or true, 0 or false"
            ))),
        };
        let tracks = match (switch("audio-only")?, switch("video-only")?) {
            (false, false) => Tracks::All,
            (true, false) => Tracks::AudioOnly,
            (false, true) => Tracks::VideoOnly,
            (true, true) => {
                return Err(UrlError::Malformed(
                    "audio-only and video-only: one of them at most".to_string(),
                ))
            }
        };
        if !any && preferred.is_none() && tracks == Tracks::All {
            return Ok(None);
        }
        ranges.sort_unstable();
        ranges.dedup();
        Ok(Some(MasterFilter {
            ranges,
            preferred,
            tracks,
        }))
    }

    /// Whether a rendition of `bits_per_second` (average) is kept.
    pub fn keeps(&self, bits_per_second: u64) -> bool {
        let kbps = (bits_per_second + 500) / 1000;
        self.ranges.is_empty()
            || self
                .ranges
                .iter()
                .any(|&(lo, hi)| (lo..=hi).contains(&kbps))
    }

    /// Which of the renditions of `bits_per_second` (average) to list
    /// first: the nearest `__b__`, within 100 kbit/s of it (the first of
    /// equals); `None` to keep the order.
    pub fn first_of(&self, bits_per_second: &[u64]) -> Option<usize> {
        let preferred = self.preferred?;
        bits_per_second
            .iter()
            .map(|&bps| ((bps + 500) / 1000).abs_diff(preferred))
            .enumerate()
            .filter(|&(_, off)| off <= PERSONALIZATION_SLACK_KBPS)
            .min_by_key(|&(i, off)| (off, i))
            .map(|(i, _)| i)
    }

    /// The same filter as text, whatever order and form it was given in
    /// (for cache keys).
    pub fn canonical(&self) -> String {
        let items: Vec<String> = self
            .ranges
            .iter()
            .map(|(lo, hi)| format!("{lo}-{hi}"))
            .collect();
        let mut text = items.join(",");
        if let Some(first) = self.preferred {
            text += &format!("|first={first}");
        }
        if let Some(kind) = self.tracks.kind_suffix() {
            text += &format!("|only={kind}");
        }
        text
    }
}

/// A bitrate in kbit/s: digits only, nine at most.
fn kbps(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.len() <= 9 && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
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

    fn filter(query: &str) -> MasterFilter {
        MasterFilter::of_query(query).unwrap().unwrap()
    }

    #[test]
    fn master_filters_read_msod_and_personalization_parameters() {
        assert_eq!(MasterFilter::of_query("x=1&null=0").unwrap(), None);
        // b-in: within 100 kbit/s of a listed rate.
        let f = filter("b-in=400,1000");
        assert!(f.keeps(300_000) && f.keeps(500_000) && f.keeps(1_099_000));
        assert!(!f.keeps(299_000) && !f.keeps(600_000) && !f.keeps(1_101_000));
        // b-in-range: inclusive ranges; b=: 10 %, 100 kbit/s at least.
        let f = filter("b-in-range=100-200,3000-4000");
        assert!(f.keeps(100_000) && f.keeps(4_000_000) && !f.keeps(2_999_000));
        let f = filter("b=2000");
        assert!(f.keeps(1_800_000) && f.keeps(2_200_000) && !f.keeps(2_201_000));
        // Together: kept by any.
        let f = filter("b=0-100&b-in-range=900-1000");
        assert!(f.keeps(50_000) && f.keeps(950_000) && !f.keeps(500_000));
        // The same filter however written: one cache key.
        assert_eq!(
            filter("b-in-range=900-1000&b=0-100").canonical(),
            filter("b=0-100,900-1000").canonical()
        );
        assert_ne!(
            filter("b=0-100").canonical(),
            filter("b=0-100&__b__=50").canonical()
        );
        assert_ne!(
            filter("b=0-100").canonical(),
            filter("b=0-100&audio-only").canonical()
        );
    }

    #[test]
    fn the_preferred_bitrate_picks_the_nearest_within_100_kbps() {
        // Nothing but __b__: every rendition kept, one listed first.
        let f = filter("__b__=800");
        assert!(f.keeps(1) && f.keeps(u64::MAX / 2));
        assert_eq!(f.first_of(&[400_000, 880_000, 790_000, 2_000_000]), Some(2));
        assert_eq!(f.first_of(&[400_000, 901_000]), None);
        // Equally near: the first of them.
        assert_eq!(f.first_of(&[850_000, 750_000]), Some(0));
        assert_eq!(filter("b=1-").first_of(&[800_000]), None);
    }

    #[test]
    fn the_track_switches_are_flags() {
        for (query, tracks) in [
            ("audio-only", Tracks::AudioOnly),
            ("audio-only=1", Tracks::AudioOnly),
            ("x=2&video-only=true", Tracks::VideoOnly),
            ("audio-only=0&b=1-", Tracks::All),
            ("video-only=false&__b__=5", Tracks::All),
        ] {
            assert_eq!(filter(query).tracks, tracks, "{query}");
        }
        assert_eq!(MasterFilter::of_query("audio-only=false").unwrap(), None);
    }

    #[test]
    fn malformed_master_filters_are_refused() {
        let many = (0..33).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        for bad in [
            "b=",
            "b",
            "b=abc",
            "b=700-200",
            "b=1,,2",
            "b-in=1-2",
            "b-in=",
            "b-in-range=100",
            "b-in-range=400-100",
            "b-in-range=1-",
            "__b__=",
            "__b__=1-2",
            "__b__=1234567890",
            "audio-only=yes please",
            "audio-only&video-only",
            &format!("b-in={many}"),
        ] {
            assert!(
                matches!(MasterFilter::of_query(bad), Err(UrlError::Malformed(_))),
                "{bad}"
            );
        }
        // 32 items are fine, across parameters too.
        let half = (0..16).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert!(MasterFilter::of_query(&format!("b={half}&b-in={half}")).is_ok());
        assert!(MasterFilter::of_query(&format!("b={half}&b-in={half},99")).is_err());
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
