//! HLS playlists (RFC 8216) with Akamai MSOD names: `master.m3u8`,
//! `index_<N>_<kind>.m3u8` and `segment<K>_<N>_<kind>.ts`, K from 1.

use std::fmt::Write;

use crate::packager::captions::Captions;
use crate::packager::segment::Segment;
use crate::packager::url::keyed;

/// What a master playlist says of one rendition (RFC 8216 4.3.4.2).
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// Peak segment bitrate, bits per second, of the TS as written.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    /// RFC 6381 codec strings, comma-separated.
    pub codecs: String,
    pub resolution: Option<(u16, u16)>,
    pub frame_rate: Option<f64>,
    /// `av`, `a` or `v`.
    pub kind_suffix: &'static str,
    /// Every segment starts where a decoder can start (RFC 8216 4.3.5.1).
    pub independent_segments: bool,
    /// The language of its audio track, if it has one; and the file's
    /// other audio tracks, `(kind, language)`, each an audio-only
    /// rendition `index_<N>_<kind>.m3u8`.
    pub audio_language: Option<String>,
    pub other_audio: Vec<(String, String)>,
    /// Its I-frame playlist's entry, when it has video and one is offered.
    pub iframes: Option<IFrames>,
}

/// What a master says of a rendition's I-frame playlist (RFC 8216
/// 4.3.4.3): the bitrates of its key frames alone, and the video codec.
#[derive(Clone, Debug, PartialEq)]
pub struct IFrames {
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub codecs: String,
}

pub fn media_playlist_name(n: usize, kind_suffix: &str) -> String {
    format!("index_{n}_{kind_suffix}.m3u8")
}

/// `k` is 1-based, as in the URL.
pub fn segment_name(k: usize, n: usize, kind_suffix: &str) -> String {
    format!("segment{k}_{n}_{kind_suffix}.ts")
}

/// The AES-128 key of rendition `n`'s segments, made with the secret
/// named `key_id`.
pub fn key_name(key_id: &str, n: usize) -> String {
    format!("key_{key_id}_{n}.key")
}

/// `playlist` with `query` (`name=value`, already fit for a URI) added to
/// every URI it lists, on URI lines and in `URI="..."` attributes: how a
/// signed URL's token is carried on to what a player asks for next.
pub fn with_query(playlist: &str, query: &str) -> String {
    let add = |uri: &str| {
        if uri.starts_with("data:") {
            // Not fetched: the bytes are in it.
            return uri.to_string();
        }
        let joint = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{joint}{query}")
    };
    let mut out = String::with_capacity(playlist.len() * 2);
    for line in playlist.lines() {
        if line.is_empty() {
        } else if !line.starts_with('#') {
            out.push_str(&add(line));
        } else if let Some((head, rest)) = line.split_once("URI=\"") {
            match rest.split_once('"') {
                Some((uri, tail)) => {
                    let _ = write!(out, "{head}URI=\"{}\"{tail}", add(uri));
                }
                None => out.push_str(line),
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The I-frame playlist of rendition `n` (`iframes_<N>_<kind>.m3u8`).
pub fn iframe_playlist_name(n: usize, kind_suffix: &str) -> String {
    format!("iframes_{n}_{kind_suffix}.m3u8")
}

/// A subtitle rendition of a master (RFC 8216 4.3.4.1, TYPE=SUBTITLES).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subtitles {
    /// Its name in URLs ([`crate::packager::subtitles::Sidecar::tag`]).
    pub tag: String,
    /// BCP 47; `None` when unknown.
    pub language: Option<String>,
    pub forced: bool,
}

/// `master` with the closed captions of its variants: `captions[i]` is
/// what the i-th `EXT-X-STREAM-INF` carries in its video. Each set of
/// channels is a `CLOSED-CAPTIONS` group (RFC 8216 4.3.4.1: one rendition
/// per `INSTREAM-ID`), and a variant that carries them names it
/// (4.3.4.2). Nothing is said of a variant without captions.
pub fn with_closed_captions(master: &str, captions: &[Captions]) -> String {
    let mut groups: Vec<Captions> = Vec::new();
    for c in captions.iter().filter(|c| c.any()) {
        if !groups.contains(c) {
            groups.push(*c);
        }
    }
    if groups.is_empty() {
        return master.to_string();
    }
    let group_id = |c: &Captions| {
        let at = groups.iter().position(|g| g == c).expect("listed");
        if at == 0 {
            "cc".to_string()
        } else {
            format!("cc{}", at + 1)
        }
    };
    let mut media = String::new();
    for g in &groups {
        for id in g.instream_ids() {
            let _ = writeln!(
                media,
                "#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"{}\",NAME=\"{id}\",\
                 INSTREAM-ID=\"{id}\",DEFAULT=NO,AUTOSELECT=YES",
                group_id(g)
            );
        }
    }
    let mut out = String::with_capacity(master.len() + media.len() + 64);
    let mut variant = 0;
    for line in master.lines() {
        if line.starts_with("#EXT-X-STREAM-INF:") {
            out.push_str(&std::mem::take(&mut media));
            out.push_str(line);
            if let Some(c) = captions.get(variant).filter(|c| c.any()) {
                let _ = write!(out, ",CLOSED-CAPTIONS=\"{}\"", group_id(c));
            }
            variant += 1;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The media playlist of a subtitle rendition.
pub fn subtitle_playlist_name(tag: &str) -> String {
    format!("subtitles_{tag}.m3u8")
}

/// `k` is 1-based, as in the URL.
pub fn subtitle_segment_name(k: usize, tag: &str) -> String {
    format!("subtitles{k}_{tag}.vtt")
}

/// The group every variant names in `SUBTITLES=`.
const SUBTITLES_GROUP: &str = "subs";

/// `master` (TS or fMP4) with `subtitles` as renditions of one group
/// that every variant names (4.3.4.1, 4.3.4.2): their `EXT-X-MEDIA` tags
/// before the first variant. None is the default (a viewer turns them on);
/// each is chosen automatically by language, a forced one (dialogue in
/// another language than the audio's) only for that.
pub fn with_subtitles(master: &str, subtitles: &[Subtitles], prefix: &str) -> String {
    if subtitles.is_empty() {
        return master.to_string();
    }
    let mut media = String::new();
    let mut names: Vec<String> = Vec::new();
    for s in subtitles {
        let mut name = crate::packager::subtitles::language_name(s.language.as_deref());
        if s.forced {
            name.push_str(" (forced)");
        }
        while names.contains(&name) {
            name.push('+');
        }
        let _ = write!(
            media,
            "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"{SUBTITLES_GROUP}\",NAME=\"{name}\""
        );
        if let Some(language) = &s.language {
            let _ = write!(media, ",LANGUAGE=\"{language}\"");
        }
        let forced = if s.forced { "YES" } else { "NO" };
        let _ = writeln!(
            media,
            ",DEFAULT=NO,AUTOSELECT=YES,FORCED={forced},URI=\"{prefix}{}\"",
            subtitle_playlist_name(&s.tag)
        );
        names.push(name);
    }
    let mut out = String::with_capacity(master.len() + media.len() + 64);
    for line in master.lines() {
        if line.starts_with("#EXT-X-STREAM-INF:") {
            if !media.is_empty() {
                out.push_str(&std::mem::take(&mut media));
            }
            let _ = writeln!(out, "{line},SUBTITLES=\"{SUBTITLES_GROUP}\"");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The media playlist of the subtitle rendition `tag`: a WebVTT segment
/// for each of the media's `segments`, of the same durations (RFC 8216
/// 3.5, 6.2.4: subtitle segments are aligned with the media's).
pub fn subtitle_playlist(segments: &[Segment], tag: &str, prefix: &str) -> String {
    let uri = |k: usize| format!("{prefix}{}", subtitle_segment_name(k, tag));
    vod_playlist(&[Part {
        segments,
        tags: String::new(),
        uri: &uri,
    }])
}

/// A VOD I-frame playlist (RFC 8216 4.3.3.6): the key frame each segment
/// starts with, as a byte range of the segment (`picture_lens[k]` bytes
/// from its start: the PAT, the PMT and the picture), lasting until the
/// next one.
pub fn iframe_playlist(
    segments: &[Segment],
    picture_lens: &[u64],
    n: usize,
    kind_suffix: &str,
    prefix: &str,
) -> String {
    let millis: Vec<i64> = segments.iter().map(extinf_millis).collect();
    let target = millis.iter().max().map_or(1, |ms| (ms + 999) / 1000).max(1);
    let mut out = String::with_capacity(96 + 72 * segments.len());
    out.push_str("#EXTM3U\n#EXT-X-VERSION:4\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str("#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-I-FRAMES-ONLY\n");
    for (k, (ms, len)) in millis.iter().zip(picture_lens).enumerate() {
        let _ = writeln!(out, "#EXTINF:{}.{:03},", ms / 1000, ms % 1000);
        let _ = writeln!(out, "#EXT-X-BYTERANGE:{len}@0");
        out.push_str(prefix);
        out.push_str(&segment_name(k + 1, n, kind_suffix));
        out.push('\n');
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// A segment's `#EXTINF` duration in milliseconds, as written: bitrates
/// in the master are computed from these, as a player computes them
/// (RFC 8216 4.3.4.2: segment sizes over their EXTINF durations).
pub fn extinf_millis(segment: &Segment) -> i64 {
    (segment.duration_90k() + 45) / 90
}

/// A VOD media playlist listing every segment of rendition `n`; `prefix`
/// goes before each segment's name (empty for relative URIs). With `key`
/// (a secret's id, and what goes before the key's name: `prefix` if
/// empty), every segment is encrypted with AES-128 under the key of that
/// secret (`key_<ID>_<N>.key`), its IV its media sequence number (4.3.2.4,
/// 5.2), and its name says so ([`crate::packager::url::keyed`]).
pub fn media_playlist(
    segments: &[Segment],
    n: usize,
    kind_suffix: &str,
    prefix: &str,
    key: Option<(&str, &str)>,
) -> String {
    media_playlist_after(None, segments, n, kind_suffix, prefix, key)
}

/// A pre-roll's segments, played before the content: those of rendition
/// 0 of another source, of the same kind, named under `prefix` (the
/// pre-roll's own directory, as an absolute path or URL). With `key` (a
/// secret's id and where its key is named: `prefix` if empty) it is
/// protected: its segments are encrypted, their IVs their sequence
/// numbers (it comes first).
pub struct Preroll<'a> {
    pub segments: &'a [Segment],
    pub prefix: String,
    pub key: Option<(String, String)>,
}

/// As [`media_playlist`], after `preroll`'s segments when there is one:
/// an `EXT-X-DISCONTINUITY` between the two (4.3.2.3: another file, its
/// own timestamps and continuity counters). Media sequence numbers run on
/// over both, so the content's K-th segment is number `preroll + K`; as
/// its AES-128 IV is K whatever comes before it (the same segment is
/// played after every pre-roll), each content segment then gets its key
/// tag with that IV (4.3.2.4). The pre-roll stays clear. No segment is
/// removed, so the discontinuity sequence is 0 throughout (4.3.3.3).
pub fn media_playlist_after(
    preroll: Option<&Preroll>,
    segments: &[Segment],
    n: usize,
    kind_suffix: &str,
    prefix: &str,
    key: Option<(&str, &str)>,
) -> String {
    let key_id = key.map(|(id, _)| id);
    let key_tag = key.map(|(id, base)| {
        let base = if base.is_empty() { prefix } else { base };
        format!(
            "#EXT-X-KEY:METHOD=AES-128,URI=\"{base}{}\"",
            key_name(id, n)
        )
    });
    let mut content_tags = String::new();
    if preroll.is_some() {
        content_tags.push_str("#EXT-X-DISCONTINUITY\n");
    }
    let iv_per_segment = preroll.is_some() && key.is_some();
    if key.is_none() && preroll.is_some_and(|p| p.key.is_some()) {
        // The pre-roll's key does not go on to clear content.
        content_tags.push_str("#EXT-X-KEY:METHOD=NONE\n");
    }
    if let (Some(tag), false) = (&key_tag, iv_per_segment) {
        content_tags.push_str(tag);
        content_tags.push('\n');
    }
    let content_uri = |k: usize| {
        let name = format!("{prefix}{}", keyed(segment_name(k, n, kind_suffix), key_id));
        match (&key_tag, iv_per_segment) {
            (Some(tag), true) => format!("{tag},IV=0x{k:032X}\n{name}"),
            _ => name,
        }
    };
    let mut parts: Vec<Part> = Vec::with_capacity(2);
    let preroll_uri;
    if let Some(p) = preroll {
        let ad_key_id = p.key.as_ref().map(|(id, _)| id.as_str());
        preroll_uri = move |k: usize| {
            let name = keyed(segment_name(k, 0, kind_suffix), ad_key_id);
            format!("{}{name}", p.prefix)
        };
        let tags = match &p.key {
            Some((id, base)) => {
                let base = if base.is_empty() { &p.prefix } else { base };
                format!(
                    "#EXT-X-KEY:METHOD=AES-128,URI=\"{base}{}\"\n",
                    key_name(id, 0)
                )
            }
            None => String::new(),
        };
        parts.push(Part {
            segments: p.segments,
            tags,
            uri: &preroll_uri,
        });
    }
    parts.push(Part {
        segments,
        tags: content_tags,
        uri: &content_uri,
    });
    vod_playlist(&parts)
}

/// A run of segments of a playlist: `tags` before the first, segment K
/// (1-based within the run) at `uri(K)` (which may put tags of its own
/// before the URI: they apply to that segment).
struct Part<'a> {
    segments: &'a [Segment],
    tags: String,
    uri: &'a dyn Fn(usize) -> String,
}

/// A VOD media playlist of `parts`, one after the other.
fn vod_playlist(parts: &[Part]) -> String {
    // EXTINF is written in milliseconds; TARGETDURATION is the largest of
    // those rounded up, so that no rounded EXTINF exceeds it (4.3.3.1).
    let millis: Vec<Vec<i64>> = parts
        .iter()
        .map(|p| p.segments.iter().map(extinf_millis).collect())
        .collect();
    let longest = millis.iter().flatten().max();
    let target = longest.map_or(1, |ms| (ms + 999) / 1000).max(1);
    let count: usize = millis.iter().map(Vec::len).sum();
    let mut out = String::with_capacity(64 + 48 * count);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str("#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PLAYLIST-TYPE:VOD\n");
    for (part, millis) in parts.iter().zip(&millis) {
        out.push_str(&part.tags);
        for (k, ms) in millis.iter().enumerate() {
            let _ = writeln!(out, "#EXTINF:{}.{:03},", ms / 1000, ms % 1000);
            out.push_str(&(part.uri)(k + 1));
            out.push('\n');
        }
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// A master playlist; rendition `n` is `variants[n]`, and `prefix` goes
/// before each media playlist's name (empty for relative URIs).
/// `#EXT-X-INDEPENDENT-SEGMENTS` applies to every media playlist of the
/// master, so it is written only when it is true of every variant.
///
/// A file with several audio tracks gives an audio group: its first track
/// in the variants (an `EXT-X-MEDIA` without URI), the others as
/// audio-only renditions of their own.
pub fn master_playlist(variants: &[(usize, Variant)], prefix: &str) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
    if variants.iter().all(|(_, v)| v.independent_segments) {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    let group = variants
        .iter()
        .find(|(_, v)| !v.other_audio.is_empty() && v.audio_language.is_some());
    if let Some((n, v)) = group {
        let media = |out: &mut String, language: &str, default: bool| {
            let _ = write!(
                out,
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"{language}\""
            );
            if language != "und" {
                let _ = write!(out, ",LANGUAGE=\"{language}\"");
            }
            let yes = if default { "YES" } else { "NO" };
            let _ = write!(out, ",DEFAULT={yes},AUTOSELECT=YES");
        };
        media(&mut out, v.audio_language.as_deref().unwrap_or("und"), true);
        out.push('\n');
        for (kind, language) in &v.other_audio {
            media(&mut out, language, false);
            let _ = writeln!(out, ",URI=\"{prefix}{}\"", media_playlist_name(*n, kind));
        }
    }
    for (n, v) in variants {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"",
            v.bandwidth, v.average_bandwidth, v.codecs
        );
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(fps) = v.frame_rate {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        if group.is_some() && v.audio_language.is_some() {
            out.push_str(",AUDIO=\"audio\"");
        }
        let _ = writeln!(out, "\n{prefix}{}", media_playlist_name(*n, v.kind_suffix));
    }
    for (n, v) in variants {
        let Some(iframes) = &v.iframes else { continue };
        let _ = write!(
            out,
            "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"",
            iframes.bandwidth, iframes.average_bandwidth, iframes.codecs
        );
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        let _ = writeln!(
            out,
            ",URI=\"{prefix}{}\"",
            iframe_playlist_name(*n, v.kind_suffix)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start_90k: i64, end_90k: i64) -> Segment {
        Segment {
            video: 0..0,
            audio: 0..0,
            more_audio: Vec::new(),
            start_90k,
            end_90k,
        }
    }

    fn variant(independent_segments: bool) -> Variant {
        Variant {
            bandwidth: 1,
            average_bandwidth: 1,
            codecs: "mp4a.40.2".into(),
            resolution: None,
            frame_rate: None,
            kind_suffix: "a",
            independent_segments,
            audio_language: None,
            other_audio: Vec::new(),
            iframes: None,
        }
    }

    #[test]
    fn a_query_is_carried_to_every_uri_and_nothing_else() {
        let playlist = "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"key_1_0.key\"\n\
                        #EXTINF:6.000,\nsegment1_0_av.ts\n#EXTINF:6.000,\nhttp://x/s2.ts?a=1\n\
                        #EXT-X-MEDIA:TYPE=AUDIO,URI=\"index_0_a2.m3u8\",NAME=\"x\"\n#EXT-X-ENDLIST\n";
        assert_eq!(
            with_query(playlist, "t=1~2"),
            "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"key_1_0.key?t=1~2\"\n\
             #EXTINF:6.000,\nsegment1_0_av.ts?t=1~2\n#EXTINF:6.000,\nhttp://x/s2.ts?a=1&t=1~2\n\
             #EXT-X-MEDIA:TYPE=AUDIO,URI=\"index_0_a2.m3u8?t=1~2\",NAME=\"x\"\n#EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn independent_segments_only_when_every_variant_has_them() {
        const TAG: &str = "#EXT-X-INDEPENDENT-SEGMENTS\n";
        let both = master_playlist(&[(0, variant(true)), (1, variant(true))], "");
        assert!(both.contains(TAG), "{both}");
        let one = master_playlist(&[(0, variant(true)), (1, variant(false))], "");
        assert!(!one.contains(TAG), "{one}");
    }

    #[test]
    fn target_duration_is_the_rounded_up_longest_segment() {
        let p = media_playlist(&[seg(0, 540_540), seg(540_540, 900_000)], 2, "av", "", None);
        assert!(p.contains("#EXT-X-TARGETDURATION:7\n"), "{p}");
        assert!(
            p.contains("#EXTINF:6.006,\nsegment1_2_av.ts\n#EXTINF:3.994,\nsegment2_2_av.ts\n"),
            "{p}"
        );
        let p = media_playlist(&[seg(0, 540_000)], 0, "a", "", None);
        assert!(p.contains("#EXT-X-TARGETDURATION:6\n"), "{p}");
    }
}
