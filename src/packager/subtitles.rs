//! Subtitles: WebVTT (W3C WebVTT, 2019 CR) read and written, SubRip (SRT)
//! converted to it, and cut into the segments of an HLS subtitle rendition
//! (RFC 8216 3.5: each segment a WebVTT file with an `X-TIMESTAMP-MAP` that
//! ties its cue times to the MPEG-TS or fMP4 timeline of the media).
//!
//! Bad cues are skipped and counted, never fatal: a sidecar written by
//! hand is rarely perfect, and one bad cue must not take the others down.
//! `STYLE` and `REGION` blocks are left out: players differ on them, and
//! some (ffmpeg 5.1's reader) read no cue after one. Cue settings stay.

use std::fmt::Write;

use crate::packager::mp4::TextTrack;
use crate::packager::segment::Plan;

/// Most cues a subtitle file may hold (a feature film has 1-2 thousand).
pub const MAX_CUES: usize = 100_000;

/// Longest line of a cue's payload we keep, in bytes; longer ones are cut.
const MAX_LINE_BYTES: usize = 4096;

/// One cue: when it shows, its settings and its text, as WebVTT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cue {
    pub id: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// What follows the timings on the timing line (`line:0 align:start`).
    pub settings: String,
    /// The payload lines, joined by `\n`.
    pub text: String,
}

/// A subtitle track's cues, in start order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cues {
    pub cues: Vec<Cue>,
    /// Cues that could not be read and were left out.
    pub skipped: usize,
}

/// Why a file is no subtitle file at all.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubtitleError {
    #[error("not a WebVTT file: it does not start with \"WEBVTT\"")]
    NotWebVtt,
    #[error("not text: {0}")]
    NotText(String),
    #[error("more than {MAX_CUES} cues")]
    TooManyCues,
}

/// Reads a WebVTT file. Cues whose timing line is malformed, or that end
/// before they start, are skipped (counted in [`Cues::skipped`]).
pub fn parse_webvtt(bytes: &[u8]) -> Result<Cues, SubtitleError> {
    let text = as_text(bytes)?;
    let mut blocks = blocks(&text);
    let first = blocks.next().unwrap_or_default();
    let signature = first.first().copied().unwrap_or_default();
    if !(signature == "WEBVTT"
        || signature.starts_with("WEBVTT ")
        || signature.starts_with("WEBVTT\t"))
    {
        return Err(SubtitleError::NotWebVtt);
    }
    let mut out = Cues::default();
    for block in blocks {
        let head = block[0];
        let is = |name: &str| head.starts_with(name) && !head.contains("-->");
        if is("NOTE") || is("STYLE") || is("REGION") {
            continue;
        }
        // A cue: an optional identifier line, then the timing line.
        let (id, timing, payload) = if block[0].contains("-->") {
            (None, block[0], &block[1..])
        } else if block.len() > 1 && block[1].contains("-->") {
            (Some(block[0].to_string()), block[1], &block[2..])
        } else {
            out.skipped += 1;
            continue;
        };
        match timing_line(timing, '.') {
            Some((start_ms, end_ms, settings)) => {
                push(&mut out, id, start_ms, end_ms, settings, payload)?;
            }
            None => out.skipped += 1,
        }
    }
    finish(&mut out);
    Ok(out)
}

/// Reads a SubRip file into WebVTT cues: `HH:MM:SS,mmm` timings, the cue
/// number dropped, `<i>`, `<b>` and `<u>` kept and other markup (`<font>`,
/// `{\an8}`) removed. Cues that cannot be read are skipped and counted.
pub fn parse_srt(bytes: &[u8]) -> Result<Cues, SubtitleError> {
    let text = as_text(bytes)?;
    let mut out = Cues::default();
    for block in blocks(&text) {
        let Some(at) = block.iter().position(|line| line.contains("-->")) else {
            out.skipped += 1;
            continue;
        };
        // Before the timing line: the cue number, or nothing.
        if at > 1 {
            out.skipped += 1;
            continue;
        }
        let Some((start_ms, end_ms, _)) = timing_line(block[at], ',') else {
            out.skipped += 1;
            continue;
        };
        let payload: Vec<String> = block[at + 1..].iter().map(|l| srt_markup(l)).collect();
        let payload: Vec<&str> = payload.iter().map(String::as_str).collect();
        push(&mut out, None, start_ms, end_ms, "", &payload)?;
    }
    finish(&mut out);
    Ok(out)
}

/// Text of a file: UTF-8 without its byte order mark, line ends made `\n`.
fn as_text(bytes: &[u8]) -> Result<String, SubtitleError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes)
        .map_err(|e| SubtitleError::NotText(format!("not UTF-8 ({e})")))?;
    if text.contains('\0') {
        return Err(SubtitleError::NotText("it holds NUL bytes".into()));
    }
    Ok(text.replace("\r\n", "\n").replace('\r', "\n"))
}

/// The blocks of a file: runs of non-empty lines.
fn blocks(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.split("\n\n")
        .map(|b| {
            b.split('\n')
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|b| !b.is_empty())
}

fn push(
    out: &mut Cues,
    id: Option<String>,
    start_ms: i64,
    end_ms: i64,
    settings: &str,
    payload: &[&str],
) -> Result<(), SubtitleError> {
    if end_ms <= start_ms {
        out.skipped += 1;
        return Ok(());
    }
    if out.cues.len() >= MAX_CUES {
        return Err(SubtitleError::TooManyCues);
    }
    let text = payload
        .iter()
        .map(|line| cut(line, MAX_LINE_BYTES))
        .collect::<Vec<_>>()
        .join("\n");
    out.cues.push(Cue {
        // An identifier may not contain "-->", and is one line.
        id: id.filter(|id| !id.contains("-->")),
        start_ms,
        end_ms,
        settings: settings.to_string(),
        text,
    });
    Ok(())
}

/// Cues in start order (stable: equal starts keep the file's order).
fn finish(out: &mut Cues) {
    out.cues.sort_by_key(|c| c.start_ms);
}

fn cut(line: &str, max: usize) -> &str {
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// `start --> end [settings]`, times with `fraction` (`.` in WebVTT, `,`
/// in SRT; either is taken from SRT, which is often written loosely).
fn timing_line(line: &str, fraction: char) -> Option<(i64, i64, &str)> {
    let (start, rest) = line.split_once("-->")?;
    let rest = rest.trim_start();
    let (end, settings) = match rest.find(char::is_whitespace) {
        Some(at) => (&rest[..at], rest[at..].trim()),
        None => (rest, ""),
    };
    let start_ms = timestamp(start.trim(), fraction)?;
    let end_ms = timestamp(end.trim(), fraction)?;
    Some((start_ms, end_ms, settings))
}

/// `[hh:]mm:ss.ttt` in milliseconds (hours of any number of digits, up to
/// a bound; minutes and seconds two digits under 60; three digits of
/// fraction).
fn timestamp(s: &str, fraction: char) -> Option<i64> {
    let s = if fraction == ',' {
        s.replace('.', ",")
    } else {
        s.to_string()
    };
    let (clock, millis) = s.split_once(fraction)?;
    if millis.len() != 3 || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parts: Vec<&str> = clock.split(':').collect();
    let (hours, minutes, seconds) = match parts.as_slice() {
        [m, s] => ("0", *m, *s),
        [h, m, s] => (*h, *m, *s),
        _ => return None,
    };
    let two = |p: &str| -> Option<i64> {
        (p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse().ok())
            .flatten()
            .filter(|v| *v < 60)
    };
    if hours.is_empty() || hours.len() > 6 || !hours.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i64 = hours.parse().ok()?;
    let millis: i64 = millis.parse().ok()?;
    Some(((hours * 60 + two(minutes)?) * 60 + two(seconds)?) * 1000 + millis)
}

/// Plain text (a timed-text sample's) as a WebVTT cue payload: `&`, `<`
/// and `>` escaped, blank lines (which would end the cue) left out.
pub fn webvtt_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines().map(|l| l.trim_end_matches('\0').trim_end()) {
        if line.trim().is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        for c in line.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                _ => out.push(c),
            }
        }
    }
    out
}

/// A SubRip payload line as WebVTT: `<i>`, `<b>`, `<u>` (and their ends)
/// kept, other tags and ASS overrides (`{\an8}`) removed, `&`, `<` and `>`
/// escaped.
fn srt_markup(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            if let Some(end) = rest.find('>') {
                let tag = rest[1..end].trim().to_ascii_lowercase();
                if matches!(tag.as_str(), "i" | "b" | "u" | "/i" | "/b" | "/u") {
                    let _ = write!(out, "<{tag}>");
                }
                rest = &rest[end + 1..];
                continue;
            }
        }
        if c == '{' && rest.starts_with("{\\") {
            if let Some(end) = rest.find('}') {
                rest = &rest[end + 1..];
                continue;
            }
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `ms` as a WebVTT timestamp, `hh:mm:ss.ttt` (negative times as 0).
fn write_timestamp(out: &mut String, ms: i64) {
    let ms = ms.max(0);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
}

fn write_cue(out: &mut String, cue: &Cue, shift_ms: i64) {
    if let Some(id) = &cue.id {
        out.push_str(id);
        out.push('\n');
    }
    write_timestamp(out, cue.start_ms - shift_ms);
    out.push_str(" --> ");
    write_timestamp(out, cue.end_ms - shift_ms);
    if !cue.settings.is_empty() {
        out.push(' ');
        out.push_str(&cue.settings);
    }
    out.push('\n');
    out.push_str(&cue.text);
    out.push_str("\n\n");
}

impl Cues {
    /// The whole track as one WebVTT file, every time `shift_ms` earlier
    /// (a DASH text track: times from the Period's start).
    pub fn to_webvtt(&self, shift_ms: i64) -> String {
        let mut out = String::from("WEBVTT\n\n");
        for cue in self.cues.iter().filter(|c| c.end_ms > shift_ms) {
            write_cue(&mut out, cue, shift_ms);
        }
        out
    }

    /// The HLS subtitle segment of `[start_ms, end_ms)` (`end_ms` `None`
    /// for the last segment: every cue from `start_ms` on): each cue that
    /// shows during it, whole, at its own times, which `X-TIMESTAMP-MAP`
    /// ties to the media's: cue time 0 is MPEG-TS time `offset_90k` (RFC
    /// 8216 3.5). A cue that spans a boundary is in both segments, as
    /// players expect.
    pub fn segment(&self, start_ms: i64, end_ms: Option<i64>, offset_90k: i64) -> String {
        let mut out = String::from("WEBVTT\n");
        let _ = write!(
            out,
            "X-TIMESTAMP-MAP=MPEGTS:{},LOCAL:00:00:00.000\n\n",
            offset_90k.rem_euclid(1 << 33)
        );
        let shows = |c: &&Cue| c.end_ms > start_ms && end_ms.is_none_or(|end| c.start_ms < end);
        for cue in self.cues.iter().filter(shows) {
            write_cue(&mut out, cue, 0);
        }
        out
    }
}

/// What a sidecar file's name says of it: `<stem>.vtt`, `<stem>.srt`,
/// `<stem>.<lang>.vtt`, `<stem>.<lang>.srt`, and either with `.forced`
/// before the extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sidecar {
    /// BCP 47 language tag, lower case; `None` when the name has none.
    pub language: Option<String>,
    pub forced: bool,
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    WebVtt,
    Srt,
}

impl Sidecar {
    /// The sidecar `file_name` is of a source whose name without its
    /// extension is `stem`; `None` when it is none.
    pub fn of(stem: &str, file_name: &str) -> Option<Sidecar> {
        let rest = file_name.strip_prefix(stem)?;
        let (rest, format) = if let Some(r) = rest.strip_suffix(".vtt") {
            (r, Format::WebVtt)
        } else if let Some(r) = rest.strip_suffix(".srt") {
            (r, Format::Srt)
        } else {
            return None;
        };
        let (rest, forced) = match rest.strip_suffix(".forced") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let language = match rest {
            "" => None,
            _ => Some(language_tag(rest.strip_prefix('.')?)?),
        };
        Some(Sidecar {
            language,
            forced,
            format,
        })
    }

    /// The name it goes by in URLs: its language (`und` without one),
    /// `-forced` after it when forced (`en`, `en-forced`).
    pub fn tag(&self) -> String {
        let language = self.language.as_deref().unwrap_or("und");
        match self.forced {
            true => format!("{language}-forced"),
            false => language.to_string(),
        }
    }
}

/// A BCP 47 tag as sidecars name them (`en`, `pt-BR`, `zh-Hant`), lower
/// case; `None` for anything else.
fn language_tag(s: &str) -> Option<String> {
    let mut parts = s.split('-');
    let primary = parts.next()?;
    let fits = (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic());
    let rest_fit =
        parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    (fits && rest_fit && s.len() <= 35).then(|| s.to_ascii_lowercase())
}

/// A tag made by [`Sidecar::tag`], as a URL names it; `None` for any other.
pub fn parse_tag(tag: &str) -> Option<(Option<String>, bool)> {
    let (language, forced) = match tag.strip_suffix("-forced") {
        Some(l) => (l, true),
        None => (tag, false),
    };
    let language = match language {
        "und" => None,
        l => Some(language_tag(l).filter(|t| t == l)?),
    };
    Some((language, forced))
}

/// Common languages: the ISO 639-1 code, the ISO 639-2 codes (T, then B
/// when it differs) and the English name.
const LANGUAGES: [(&str, &[&str], &str); 22] = [
    ("ar", &["ara"], "Arabic"),
    ("da", &["dan"], "Danish"),
    ("de", &["deu", "ger"], "German"),
    ("el", &["ell", "gre"], "Greek"),
    ("en", &["eng"], "English"),
    ("es", &["spa"], "Spanish"),
    ("fi", &["fin"], "Finnish"),
    ("fr", &["fra", "fre"], "French"),
    ("he", &["heb"], "Hebrew"),
    ("hi", &["hin"], "Hindi"),
    ("it", &["ita"], "Italian"),
    ("ja", &["jpn"], "Japanese"),
    ("ko", &["kor"], "Korean"),
    ("nl", &["nld", "dut"], "Dutch"),
    ("no", &["nor", "nb", "nob"], "Norwegian"),
    ("pl", &["pol"], "Polish"),
    ("pt", &["por"], "Portuguese"),
    ("ru", &["rus"], "Russian"),
    ("sv", &["swe"], "Swedish"),
    ("tr", &["tur"], "Turkish"),
    ("uk", &["ukr"], "Ukrainian"),
    ("zh", &["zho", "chi"], "Chinese"),
];

fn common_language(
    code: &str,
) -> Option<&'static (&'static str, &'static [&'static str], &'static str)> {
    LANGUAGES
        .iter()
        .find(|(two, others, _)| *two == code || others.contains(&code))
}

/// The BCP 47 tag of an ISO 639-2 code (an MP4 track's language): its
/// two-letter form where there is one (RFC 5646 2.2.1), else the code.
pub fn language_tag_of_iso639_2(code: &str) -> String {
    common_language(code).map_or_else(|| code.to_string(), |(two, _, _)| two.to_string())
}

/// What a player shows for a language: its English name for common ones,
/// else the tag itself.
pub fn language_name(tag: Option<&str>) -> String {
    let Some(tag) = tag else {
        return "Subtitles".to_string();
    };
    let primary = tag.split('-').next().unwrap_or(tag);
    let Some((_, _, name)) = common_language(primary) else {
        return tag.to_string();
    };
    match tag.split_once('-') {
        Some((_, region)) => format!("{name} ({region})"),
        None => name.to_string(),
    }
}

impl Format {
    /// Reads a file of this format (SRT converted to WebVTT cues).
    pub fn parse(self, bytes: &[u8]) -> Result<Cues, SubtitleError> {
        match self {
            Format::WebVtt => parse_webvtt(bytes),
            Format::Srt => parse_srt(bytes),
        }
    }
}

/// A sidecar larger than this is not read (a feature film's subtitles
/// are 50-150 kB).
pub const MAX_SIDECAR_BYTES: u64 = 16 << 20;

/// Where a subtitle rendition's cues are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Text {
    Sidecar(Format),
    /// The track of this id in its source's file.
    InFile(u32),
}

/// A subtitle rendition of a stream, before its cues are read. `S` says
/// where its file is: a sidecar's, or the media file whose track it is.
#[derive(Clone, Debug)]
pub struct SubtitleTrack<S> {
    /// Its name in URLs (see [`Sidecar::tag`]).
    pub tag: String,
    /// BCP 47 (ISO 639-2 for a file's track); `None` when unknown.
    pub language: Option<String>,
    pub forced: bool,
    pub text: Text,
    pub source: S,
}

impl<S> SubtitleTrack<S> {
    /// Its entry in a master.
    pub fn entry(&self) -> crate::packager::hls::Subtitles {
        crate::packager::hls::Subtitles {
            tag: self.tag.clone(),
            language: self.language.clone(),
            forced: self.forced,
        }
    }

    /// Whether it is in the same language as `other`, whatever the tag's
    /// form (`en`, `eng`).
    fn same_language<T>(&self, other: &SubtitleTrack<T>) -> bool {
        self.forced == other.forced
            && language_name(self.language.as_deref()) == language_name(other.language.as_deref())
    }
}

/// The sidecars among the file `names` of a source whose name without its
/// extension is `stem`: one for each tag (a WebVTT file before an SRT one
/// of the same language), in tag order. `source` finds each one's file;
/// one it does not find is left out.
pub fn sidecar_tracks<S>(
    stem: &str,
    names: impl IntoIterator<Item = String>,
    mut source: impl FnMut(&str) -> Option<S>,
) -> Vec<SubtitleTrack<S>> {
    let mut tracks: Vec<SubtitleTrack<S>> = Vec::new();
    for name in names {
        let Some(sidecar) = Sidecar::of(stem, &name) else {
            continue;
        };
        let tag = sidecar.tag();
        let same = tracks.iter().position(|t| t.tag == tag);
        if same.is_some_and(|at| tracks[at].text == Text::Sidecar(Format::WebVtt)) {
            continue;
        }
        let Some(source) = source(&name) else {
            continue;
        };
        let track = SubtitleTrack {
            tag,
            language: sidecar.language,
            forced: sidecar.forced,
            text: Text::Sidecar(sidecar.format),
            source,
        };
        match same {
            Some(at) => tracks[at] = track,
            None => tracks.push(track),
        }
    }
    tracks.sort_by(|a, b| a.tag.cmp(&b.tag));
    tracks
}

/// `sidecars` and the subtitle tracks `in_file` of the media file
/// `source` (`name` in messages): one rendition per language (a sidecar
/// before the file's track of its language), in tag order.
pub fn with_file_tracks<S: Clone>(
    mut tracks: Vec<SubtitleTrack<S>>,
    in_file: &[TextTrack],
    source: &S,
    name: &str,
) -> Vec<SubtitleTrack<S>> {
    for t in in_file {
        let language = (t.language != "und").then(|| language_tag_of_iso639_2(&t.language));
        let track = SubtitleTrack {
            tag: language.clone().unwrap_or_else(|| "und".to_string()),
            language,
            forced: false,
            text: Text::InFile(t.track_id),
            source: source.clone(),
        };
        if parse_tag(&track.tag).is_none() || tracks.iter().any(|other| other.same_language(&track))
        {
            tracing::debug!(
                "{name}: subtitle track {} ({}) left out: another of its language is listed",
                t.track_id,
                track.tag
            );
            continue;
        }
        tracks.push(track);
    }
    tracks.sort_by(|a, b| a.tag.cmp(&b.tag));
    tracks
}

/// Subtitle segment `k` (0-based) of an HLS rendition timed by `plan`,
/// the media's: the cues that show during media segment `k`, the last
/// one's to the end. `None` past the last segment.
pub fn hls_segment(cues: &Cues, plan: &Plan, k: usize) -> Option<String> {
    let segment = plan.segments.get(k)?;
    let last = k + 1 == plan.segments.len();
    Some(cues.segment(
        millis(segment.start_90k),
        (!last).then(|| millis(segment.end_90k)),
        plan.stream_offset_90k,
    ))
}

/// The whole track as one WebVTT file for a DASH Period that `plan`
/// times: cue times from the Period's start, the first segment's.
pub fn dash_file(cues: &Cues, plan: &Plan) -> String {
    let start = plan.segments.first().map_or(0, |s| s.start_90k);
    cues.to_webvtt(millis(start))
}

fn millis(t_90k: i64) -> i64 {
    t_90k.div_euclid(90)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VTT: &str = "\u{feff}WEBVTT - a title\r\n\r\nSTYLE\r\n::cue { color: yellow }\r\n\r\n\
        NOTE a note\r\n\r\n1\r\n00:00:01.000 --> 00:00:02.500 line:0\r\n<i>One</i>\r\ntwo\r\n\r\n\
        00:07.000 --> 00:13.000\r\nspans\r\n\r\nbad\r\n00:00:x --> 00:00:02.000\r\nskipped\r\n\r\n\
        00:00:20.000 --> 00:00:19.000\r\nbackwards\r\n";

    #[test]
    fn webvtt_cues_are_read_with_their_settings_and_bad_ones_are_counted() {
        let cues = parse_webvtt(VTT.as_bytes()).unwrap();
        assert_eq!(cues.skipped, 2);
        assert_eq!(
            cues.cues,
            vec![
                Cue {
                    id: Some("1".into()),
                    start_ms: 1000,
                    end_ms: 2500,
                    settings: "line:0".into(),
                    text: "<i>One</i>\ntwo".into(),
                },
                Cue {
                    id: None,
                    start_ms: 7000,
                    end_ms: 13000,
                    settings: String::new(),
                    text: "spans".into(),
                },
            ]
        );
        assert_eq!(
            parse_webvtt(b"1\n00:00.000 --> 00:01.000\nx"),
            Err(SubtitleError::NotWebVtt)
        );
        assert!(parse_webvtt(b"WEBVTT\n\n\xff").is_err());
    }

    #[test]
    fn segments_carry_the_cues_that_show_in_them_and_the_timestamp_map() {
        let cues = parse_webvtt(VTT.as_bytes()).unwrap();
        let first = cues.segment(0, Some(6000), 126_000);
        assert_eq!(
            first,
            "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n\n\
             1\n00:00:01.000 --> 00:00:02.500 line:0\n<i>One</i>\ntwo\n\n"
        );
        // The cue from 7 s to 13 s is in both segments it spans.
        assert!(cues
            .segment(6000, Some(12000), 0)
            .contains("00:00:07.000 --> 00:00:13.000"));
        assert!(cues
            .segment(12000, None, 0)
            .contains("00:00:07.000 --> 00:00:13.000"));
        assert!(!cues.segment(13000, None, 0).contains("-->"));
    }

    #[test]
    fn srt_becomes_webvtt_and_bad_cues_are_skipped() {
        let srt = "1\n00:00:01,000 --> 00:00:02,000\n<font color=\"red\">{\\an8}Hi</font> & <b>bye</b>\n\n\
                   2\n00:00:03,000 -> 00:00:04,000\nno arrow\n\n\
                   3\n00:00:05.000 --> 00:00:06,500\nloose\n\n\
                   garbage\n\n\
                   4\n01:00:00,000 --> 00:00:01,000\nbackwards\n";
        let cues = parse_srt(srt.as_bytes()).unwrap();
        assert_eq!(cues.skipped, 3);
        assert_eq!(
            cues.to_webvtt(0),
            "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nHi &amp; <b>bye</b>\n\n\
             00:00:05.000 --> 00:00:06.500\nloose\n\n"
        );
        assert_eq!(
            cues.to_webvtt(1500).lines().nth(5),
            Some("00:00:03.500 --> 00:00:05.000")
        );
    }

    #[test]
    fn sidecar_names_give_language_and_forced() {
        let of = |name| Sidecar::of("film", name);
        assert_eq!(
            of("film.en.vtt"),
            Some(Sidecar {
                language: Some("en".into()),
                forced: false,
                format: Format::WebVtt
            })
        );
        assert_eq!(
            of("film.pt-BR.forced.srt"),
            Some(Sidecar {
                language: Some("pt-br".into()),
                forced: true,
                format: Format::Srt
            })
        );
        assert_eq!(of("film.vtt").map(|s| s.tag()), Some("und".to_string()));
        assert_eq!(
            of("film.de.forced.srt").map(|s| s.tag()),
            Some("de-forced".to_string())
        );
        for other in [
            "film2.en.vtt",
            "film.english-subtitles-for-all.vtt",
            "film.en.txt",
            "film.e.vtt",
            "film..vtt",
        ] {
            assert_eq!(of(other), None, "{other}");
        }
        assert_eq!(
            parse_tag("pt-br-forced"),
            Some((Some("pt-br".into()), true))
        );
        assert_eq!(parse_tag("und"), Some((None, false)));
        assert_eq!(parse_tag("EN"), None);
        assert_eq!(language_name(Some("pt-br")), "Portuguese (br)");
        assert_eq!(language_name(Some("xx")), "xx");
    }

    #[test]
    fn hostile_timestamps_and_sizes_are_refused_not_panicked_on() {
        for line in [
            "99999999:00:00.000 --> 1:00.000",
            "00:60.000 --> 01:00.000",
            "-1:00.000 --> 1:00.000",
            "\u{e9}:00.000 --> 1",
        ] {
            let cues = parse_webvtt(format!("WEBVTT\n\n{line}\nx\n").as_bytes()).unwrap();
            assert_eq!((cues.cues.len(), cues.skipped), (0, 1), "{line}");
        }
        let many = "00:00.000 --> 00:01.000\nx\n\n".repeat(MAX_CUES + 1);
        assert_eq!(
            parse_webvtt(format!("WEBVTT\n\n{many}").as_bytes()),
            Err(SubtitleError::TooManyCues)
        );
    }
}
