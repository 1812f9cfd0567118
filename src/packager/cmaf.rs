//! The manifests of the CMAF output, one set of segments for both: HLS
//! version 7 playlists (RFC 8216, `EXT-X-MAP`, audio as renditions of their
//! own) and a static DASH MPD (ISO/IEC 23009-1, SegmentTemplate with
//! SegmentTimeline).
//!
//! Names, next to the manifests: `init_<N>_<t>.mp4` and `seg<K>_<N>_<t>.m4s`
//! (K from 1), with `<t>` `v` for the video track and `a` for the audio
//! track of source `<N>`; the HLS media playlists are `index_<N>_<t>.m3u8`.

use std::fmt::Write;

use crate::packager::captions::Captions;

use crate::packager::fmp4::TrackKind;
use crate::packager::url::keyed;

pub const MASTER: &str = "master.m3u8";
pub const MANIFEST: &str = "manifest.mpd";

pub fn init_name(n: usize, kind: TrackKind) -> String {
    format!("init_{n}_{}.mp4", kind.suffix())
}

/// `k` is 1-based, as in the URL.
pub fn segment_name(k: usize, n: usize, kind: TrackKind) -> String {
    format!("seg{k}_{n}_{}.m4s", kind.suffix())
}

/// The trick-play fragment of segment `k` (1-based) of rendition `n`'s
/// video: its first picture alone, lasting the whole segment.
pub fn trick_name(k: usize, n: usize) -> String {
    format!("trick{k}_{n}_v.m4s")
}

/// The I-frame playlist of rendition `n`'s video.
pub fn iframe_playlist_name(n: usize) -> String {
    format!("iframes_{n}_v.m3u8")
}

pub fn media_playlist_name(n: usize, kind: TrackKind) -> String {
    format!("index_{n}_{}.m3u8", kind.suffix())
}

/// What the manifests say of one track.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackInfo {
    pub kind: TrackKind,
    /// RFC 6381.
    pub codec: String,
    /// Peak and average bitrate of its media segments, bits per second.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub resolution: Option<(u16, u16)>,
    pub frame_rate: Option<f64>,
    /// ISO 639-2/T; `und` when unknown.
    pub language: String,
    pub channels: u16,
    pub sample_rate: u32,
    pub timescale: u32,
    /// Each segment's earliest presentation time and duration, in the
    /// track's timescale.
    pub timeline: Vec<(u64, u64)>,
    /// Where the presentation starts, in the track's timescale.
    pub presentation_time_offset: u64,
    /// Every segment starts where a decoder can start.
    pub independent: bool,
    /// When its samples are encrypted (`cbcs`): the id of the secret
    /// (in its segments' names) and the key's id.
    pub sealed: Option<(String, [u8; 16])>,
    /// Of video whose every segment starts where a decoder can: the peak
    /// bitrate of its trick-play fragments (each segment's first picture,
    /// [`trick_name`]), listed as an I-frame playlist and a trick-mode
    /// AdaptationSet when clear.
    pub trick_bandwidth: Option<u64>,
}

/// One source of a master or MPD: rendition `n`.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub n: usize,
    pub video: Option<TrackInfo>,
    /// Its audio tracks, the first one first.
    pub audio: Vec<TrackInfo>,
}

/// A VOD media playlist of one track: the segments of its source's TS
/// playlist, each as long as the track's media in it (as in the MPD).
pub fn media_playlist(track: &TrackInfo, n: usize, prefix: &str) -> String {
    playlist_of(track, n, prefix, false)
}

/// The I-frame playlist (`EXT-X-I-FRAMES-ONLY`) of a video track: its
/// trick-play fragments, each a whole resource holding one picture, timed
/// as the media segments are.
pub fn iframe_playlist(track: &TrackInfo, n: usize, prefix: &str) -> String {
    playlist_of(track, n, prefix, true)
}

fn playlist_of(track: &TrackInfo, n: usize, prefix: &str, iframes: bool) -> String {
    let (kind, independent) = (track.kind, track.independent);
    let millis: Vec<i64> = track
        .timeline
        .iter()
        .map(|&(_, d)| {
            ((u128::from(d) * 1000 + u128::from(track.timescale) / 2)
                / u128::from(track.timescale.max(1))) as i64
        })
        .collect();
    let target = millis.iter().max().map_or(1, |ms| (ms + 999) / 1000).max(1);
    let mut out = String::with_capacity(128 + 48 * millis.len());
    out.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str("#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PLAYLIST-TYPE:VOD\n");
    if independent {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    if iframes {
        out.push_str("#EXT-X-I-FRAMES-ONLY\n");
    }
    let key_id = track.sealed.as_ref().map(|(id, _)| id.as_str());
    let _ = writeln!(
        out,
        "#EXT-X-MAP:URI=\"{prefix}{}\"",
        keyed(init_name(n, kind), key_id)
    );
    if let Some((_, kid)) = &track.sealed {
        // cbcs, the key id for W3C ClearKey (as hls.js reads it: the
        // URI's bytes). A FairPlay deployment would add its skd:// key.
        let _ = writeln!(
            out,
            "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,{}\",\
             KEYFORMAT=\"org.w3.clearkey\",KEYFORMATVERSIONS=\"1\"",
            base64(kid, false)
        );
    }
    for (k, ms) in millis.iter().enumerate() {
        let _ = writeln!(out, "#EXTINF:{}.{:03},", ms / 1000, ms % 1000);
        out.push_str(prefix);
        match iframes {
            true => out.push_str(&trick_name(k + 1, n)),
            false => out.push_str(&keyed(segment_name(k + 1, n, kind), key_id)),
        }
        out.push('\n');
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// The audio renditions of a master: one per language, codec and channel
/// count, from the first source that has it.
fn audio_renditions(sources: &[Source]) -> Vec<(usize, &TrackInfo)> {
    let mut kept: Vec<(usize, &TrackInfo)> = Vec::new();
    for s in sources {
        for a in &s.audio {
            let same = |(_, k): &(usize, &TrackInfo)| {
                k.language == a.language && k.codec == a.codec && k.channels == a.channels
            };
            if !kept.iter().any(same) {
                kept.push((s.n, a));
            }
        }
    }
    kept
}

/// The HLS master: a variant per video track, each with the audio group;
/// without video, a variant per audio track.
pub fn master_playlist(sources: &[Source], prefix: &str) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    let tracks = || {
        sources
            .iter()
            .flat_map(|s| s.video.iter().chain(s.audio.iter()))
    };
    if tracks().all(|t| t.independent) {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    let audio = audio_renditions(sources);
    let videos: Vec<(usize, &TrackInfo)> = sources
        .iter()
        .filter_map(|s| s.video.as_ref().map(|v| (s.n, v)))
        .collect();
    if videos.is_empty() {
        for (n, a) in &audio {
            variant(
                &mut out,
                a.bandwidth,
                a.average_bandwidth,
                &a.codec,
                None,
                None,
                None,
            );
            let _ = writeln!(out, "\n{prefix}{}", media_playlist_name(*n, a.kind));
        }
        return out;
    }
    let mut names: Vec<String> = Vec::new();
    for (i, (n, a)) in audio.iter().enumerate() {
        let mut name = a.language.clone();
        if names.contains(&name) {
            name = format!("{} {}", a.language, i + 1);
        }
        let _ = write!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"{name}\""
        );
        if a.language != "und" {
            let _ = write!(out, ",LANGUAGE=\"{}\"", a.language);
        }
        let _ = writeln!(
            out,
            ",CHANNELS=\"{}\",DEFAULT={},AUTOSELECT=YES,URI=\"{prefix}{}\"",
            a.channels,
            if i == 0 { "YES" } else { "NO" },
            media_playlist_name(*n, a.kind)
        );
        names.push(name);
    }
    let loudest = audio.iter().map(|(_, a)| a.bandwidth).max().unwrap_or(0);
    let loudest_average = audio
        .iter()
        .map(|(_, a)| a.average_bandwidth)
        .max()
        .unwrap_or(0);
    for (n, v) in videos {
        let codecs = match audio.first() {
            Some((_, a)) => format!("{},{}", v.codec, a.codec),
            None => v.codec.clone(),
        };
        variant(
            &mut out,
            v.bandwidth + loudest,
            v.average_bandwidth + loudest_average,
            &codecs,
            v.resolution,
            v.frame_rate,
            (!audio.is_empty()).then_some("audio"),
        );
        let _ = writeln!(
            out,
            "\n{prefix}{}",
            media_playlist_name(n, TrackKind::Video)
        );
    }
    // An I-frame playlist of each clear video track that has one.
    for (n, v) in sources
        .iter()
        .filter_map(|s| s.video.as_ref().map(|v| (s.n, v)))
    {
        let Some(bandwidth) = v.trick_bandwidth.filter(|_| v.sealed.is_none()) else {
            continue;
        };
        let _ = write!(
            out,
            "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{}\"",
            v.codec
        );
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        let _ = writeln!(out, ",URI=\"{prefix}{}\"", iframe_playlist_name(n));
    }
    out
}

fn variant(
    out: &mut String,
    bandwidth: u64,
    average: u64,
    codecs: &str,
    resolution: Option<(u16, u16)>,
    frame_rate: Option<f64>,
    audio_group: Option<&str>,
) {
    let _ = write!(
        out,
        "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},AVERAGE-BANDWIDTH={average},CODECS=\"{codecs}\""
    );
    if let Some((w, h)) = resolution {
        let _ = write!(out, ",RESOLUTION={w}x{h}");
    }
    if let Some(fps) = frame_rate {
        let _ = write!(out, ",FRAME-RATE={fps:.3}");
    }
    if let Some(group) = audio_group {
        let _ = write!(out, ",AUDIO=\"{group}\"");
    }
}

/// The DASH MPD: one AdaptationSet of the video tracks, and one of the
/// audio tracks per language.
pub fn mpd(sources: &[Source], duration_seconds: f64, max_segment_seconds: f64) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let protected = sources
        .iter()
        .flat_map(|s| s.video.iter().chain(&s.audio))
        .any(|t| t.sealed.is_some());
    let _ = writeln!(
        out,
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"{} \
         profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" type=\"static\" \
         mediaPresentationDuration=\"{}\" minBufferTime=\"{}\">",
        if protected {
            " xmlns:cenc=\"urn:mpeg:cenc:2013\""
        } else {
            ""
        },
        xs_duration(duration_seconds),
        xs_duration(max_segment_seconds.ceil().max(1.0))
    );
    out.push_str("  <Period id=\"0\" start=\"PT0S\">\n");
    let videos: Vec<(usize, &TrackInfo)> = sources
        .iter()
        .filter_map(|s| s.video.as_ref().map(|v| (s.n, v)))
        .collect();
    let mut set_id = 0;
    if !videos.is_empty() {
        let max_w = videos
            .iter()
            .filter_map(|(_, v)| v.resolution)
            .map(|r| r.0)
            .max();
        let max_h = videos
            .iter()
            .filter_map(|(_, v)| v.resolution)
            .map(|r| r.1)
            .max();
        let _ = write!(
            out,
            "    <AdaptationSet id=\"{set_id}\" contentType=\"video\" mimeType=\"video/mp4\" \
             segmentAlignment=\"true\" startWithSAP=\"1\""
        );
        if let (Some(w), Some(h)) = (max_w, max_h) {
            let _ = write!(out, " maxWidth=\"{w}\" maxHeight=\"{h}\"");
        }
        out.push_str(">\n");
        for (n, v) in &videos {
            let _ = write!(
                out,
                "      <Representation id=\"v_{n}\" bandwidth=\"{}\" codecs=\"{}\"",
                v.bandwidth, v.codec
            );
            if let Some((w, h)) = v.resolution {
                let _ = write!(out, " width=\"{w}\" height=\"{h}\" sar=\"1:1\"");
            }
            if let Some(fps) = v.frame_rate {
                let _ = write!(out, " frameRate=\"{}\"", frame_rate(fps));
            }
            out.push_str(">\n");
            segment_template(&mut out, *n, v);
            out.push_str("      </Representation>\n");
        }
        out.push_str("    </AdaptationSet>\n");
        set_id += 1;
    }
    let mut languages: Vec<&str> = Vec::new();
    for a in sources.iter().flat_map(|s| &s.audio) {
        if !languages.contains(&a.language.as_str()) {
            languages.push(&a.language);
        }
    }
    for (i, language) in languages.into_iter().enumerate() {
        let _ = write!(
            out,
            "    <AdaptationSet id=\"{set_id}\" contentType=\"audio\" mimeType=\"audio/mp4\""
        );
        if language != "und" {
            let _ = write!(out, " lang=\"{language}\"");
        }
        out.push_str(" segmentAlignment=\"true\" startWithSAP=\"1\">\n");
        if i == 0 {
            // The language of the first audio track: the one to start with.
            out.push_str("      <Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"main\"/>\n");
        }
        for s in sources {
            for a in s.audio.iter().filter(|a| a.language == language) {
                let _ = writeln!(
                    out,
                    "      <Representation id=\"{}_{}\" bandwidth=\"{}\" codecs=\"{}\" \
                 audioSamplingRate=\"{}\">",
                    a.kind.suffix(),
                    s.n,
                    a.bandwidth,
                    a.codec,
                    a.sample_rate
                );
                let _ = writeln!(
                    out,
                    "        <AudioChannelConfiguration \
                 schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" \
                 value=\"{}\"/>",
                    a.channels
                );
                segment_template(&mut out, s.n, a);
                out.push_str("      </Representation>\n");
            }
        }
        out.push_str("    </AdaptationSet>\n");
        set_id += 1;
    }
    // After the others, so that their ids do not depend on it; of the
    // video AdaptationSet (id 0).
    trick_mode_set(&mut out, &videos, 0, &mut set_id);
    out.push_str("  </Period>\n</MPD>\n");
    out
}

/// A trick-mode AdaptationSet (DASH-IF IOP 3.2.9) of the clear `videos`
/// that have trick-play fragments, for the AdaptationSet `main`: a picture
/// a segment, as the HLS I-frame playlists have.
fn trick_mode_set(
    out: &mut String,
    videos: &[(usize, &TrackInfo)],
    main: usize,
    set_id: &mut usize,
) {
    let tricks: Vec<(usize, &TrackInfo, u64)> = videos
        .iter()
        .filter(|(_, v)| v.sealed.is_none())
        .filter_map(|(n, v)| Some((*n, *v, v.trick_bandwidth?)))
        .collect();
    if tricks.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "    <AdaptationSet id=\"{set_id}\" contentType=\"video\" mimeType=\"video/mp4\" \
         segmentAlignment=\"true\" startWithSAP=\"1\">\n      <EssentialProperty \
         schemeIdUri=\"http://dashif.org/guidelines/trickmode\" value=\"{main}\"/>"
    );
    for (n, v, bandwidth) in tricks {
        let _ = write!(
            out,
            "      <Representation id=\"t_{n}\" bandwidth=\"{bandwidth}\" codecs=\"{}\" \
             codingDependency=\"false\"",
            v.codec
        );
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, " width=\"{w}\" height=\"{h}\" sar=\"1:1\"");
        }
        out.push_str(">\n");
        let mut template = String::new();
        segment_template(&mut template, n, v);
        let media = format!("media=\"seg$Number$_{n}_v.m4s\"");
        let trick = format!("media=\"trick$Number$_{n}_v.m4s\"");
        out.push_str(&template.replacen(&media, &trick, 1));
        out.push_str("      </Representation>\n");
    }
    out.push_str("    </AdaptationSet>\n");
    *set_id += 1;
}

/// The MPD of `content` after a pre-roll (ISO/IEC 23009-1 5.3.2: a
/// multi-Period presentation): a first Period of `preroll`'s (an MPD of the
/// pre-roll alone) under `preroll_base` (its segments' directory URL), then
/// the content's Period, starting when the pre-roll ends. Both MPDs are
/// ones [`mpd`] made (with one Period each).
pub fn mpd_after_preroll(
    preroll: &str,
    preroll_base: &str,
    preroll_seconds: f64,
    content: &str,
    content_seconds: f64,
) -> String {
    const PERIOD: &str = "  <Period id=\"0\" start=\"PT0S\">\n";
    const PERIOD_END: &str = "  </Period>\n";
    let body = preroll
        .split_once(PERIOD)
        .and_then(|(_, rest)| rest.rsplit_once(PERIOD_END))
        .map_or("", |(body, _)| body);
    let periods = format!(
        "  <Period id=\"preroll\" start=\"PT0S\">\n    <BaseURL>{preroll_base}</BaseURL>\n\
         {body}{PERIOD_END}  <Period id=\"0\" start=\"{}\">\n",
        xs_duration(preroll_seconds)
    );
    let mut out = content.replacen(PERIOD, &periods, 1);
    let total = format!(
        "mediaPresentationDuration=\"{}\"",
        xs_duration(preroll_seconds + content_seconds)
    );
    if let Some(at) = out.find("mediaPresentationDuration=\"") {
        let end = out[at + 27..]
            .find('"')
            .map_or(out.len(), |e| at + 27 + e + 1);
        out.replace_range(at..end, &total);
    }
    let cenc = " xmlns:cenc=\"urn:mpeg:cenc:2013\"";
    if preroll.contains(cenc) && !out.contains(cenc) {
        out = out.replacen(
            "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"",
            &format!("<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"{cenc}"),
            1,
        );
    }
    out
}

/// The media playlist `content` after the pre-roll playlist `preroll`
/// (both made by [`media_playlist`], the pre-roll's URIs absolute): the
/// pre-roll's map and segments, `EXT-X-DISCONTINUITY`, then the
/// content's map, key and segments. Media sequence numbers run on; the
/// content is clear again after a protected pre-roll.
pub fn media_playlist_after(preroll: &str, content: &str) -> String {
    let body = |playlist: &str| -> Vec<String> {
        playlist
            .lines()
            .skip_while(|l| !l.starts_with("#EXT-X-MAP:"))
            .take_while(|l| *l != "#EXT-X-ENDLIST")
            .map(str::to_string)
            .collect()
    };
    let target = |playlist: &str| -> u64 {
        playlist
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
            .and_then(|t| t.parse().ok())
            .unwrap_or(1)
    };
    let independent = [preroll, content]
        .iter()
        .all(|p| p.contains("#EXT-X-INDEPENDENT-SEGMENTS\n"));
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(
        out,
        "#EXT-X-TARGETDURATION:{}",
        target(preroll).max(target(content))
    );
    out.push_str("#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PLAYLIST-TYPE:VOD\n");
    if independent {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    let (ad, main) = (body(preroll), body(content));
    for line in &ad {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("#EXT-X-DISCONTINUITY\n");
    let keyed = |lines: &[String]| lines.iter().any(|l| l.starts_with("#EXT-X-KEY:"));
    let mut lines = main.iter();
    // The content's map first, then (a clear content after a protected
    // pre-roll) the end of the pre-roll's key.
    if let Some(map) = lines.next() {
        out.push_str(map);
        out.push('\n');
    }
    if keyed(&ad) && !keyed(&main) {
        out.push_str("#EXT-X-KEY:METHOD=NONE\n");
    }
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// A subtitle rendition's whole track, as an MPD names it.
pub fn subtitle_file_name(tag: &str) -> String {
    format!("subtitles_{tag}.vtt")
}

/// `mpd` with a text AdaptationSet for each of `texts` (ISO/IEC 23009-1
/// 5.3.3, DASH-IF IOP 6.4.5): the whole track as one WebVTT file
/// (`subtitles_<tag>.vtt`, times from the Period's start), its language,
/// and the role `subtitle`, or `forced-subtitle` for a forced one.
///
/// The file is the one segment of a SegmentTemplate as long as the Period
/// (`duration_seconds`), rather than a Representation's BaseURL alone:
/// dash.js (5.2) takes such a bare file only until its first seek, which
/// it makes itself when playback starts, and drops one that arrives later;
/// a segment it buffers as it does media, and fetches again when needed.
/// Shaka reads both alike.
pub fn with_text_tracks(
    mpd: &str,
    texts: &[crate::packager::hls::Subtitles],
    duration_seconds: f64,
) -> String {
    const PERIOD_END: &str = "  </Period>\n";
    let Some(at) = mpd.rfind(PERIOD_END).filter(|_| !texts.is_empty()) else {
        return mpd.to_string();
    };
    let first_id = mpd.matches("<AdaptationSet ").count();
    // Whole milliseconds, rounded up: one segment covers the Period.
    let period_ms = ((duration_seconds * 1000.0).ceil() as u64).max(1);
    let mut sets = String::new();
    for (set_id, t) in (first_id..).zip(texts) {
        let _ = write!(
            sets,
            "    <AdaptationSet id=\"{set_id}\" contentType=\"text\" mimeType=\"text/vtt\""
        );
        if let Some(language) = &t.language {
            let _ = write!(sets, " lang=\"{language}\"");
        }
        let role = if t.forced {
            "forced-subtitle"
        } else {
            "subtitle"
        };
        let _ = write!(
            sets,
            ">\n      <Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"{role}\"/>\n\
             \x20     <Representation id=\"text_{tag}\" bandwidth=\"256\">\n\
             \x20       <SegmentTemplate timescale=\"1000\" duration=\"{period_ms}\" \
             media=\"{file}\" startNumber=\"1\"/>\n\
             \x20     </Representation>\n    </AdaptationSet>\n",
            tag = t.tag,
            file = subtitle_file_name(&t.tag)
        );
    }
    format!("{}{sets}{}", &mpd[..at], &mpd[at..])
}

/// `mpd` with the closed captions its video carries declared in the
/// video AdaptationSet (ISO/IEC 23009-1 5.8.4.3 Accessibility; SCTE 214-1
/// 6.7.2: `urn:scte:dash:cc:cea-608:2015` with `CC1=<lang>` pairs,
/// `urn:scte:dash:cc:cea-708:2015` with `1=lang:<lang>`), the language
/// `und`: the stream does not say it.
pub fn with_closed_captions(mpd: &str, captions: Captions) -> String {
    let Some(set) = mpd.find("<AdaptationSet ").and_then(|at| {
        let line_end = at + mpd[at..].find('\n')?;
        mpd[at..line_end]
            .contains("contentType=\"video\"")
            .then_some(line_end + 1)
    }) else {
        return mpd.to_string();
    };
    let mut tags = String::new();
    let cea608: Vec<String> = captions
        .instream_ids()
        .iter()
        .filter(|id| id.starts_with("CC"))
        .map(|id| format!("{id}=und"))
        .collect();
    if !cea608.is_empty() {
        let _ = writeln!(
            tags,
            "      <Accessibility schemeIdUri=\"urn:scte:dash:cc:cea-608:2015\" value=\"{}\"/>",
            cea608.join(";")
        );
    }
    if captions.dtvcc {
        tags.push_str(
            "      <Accessibility schemeIdUri=\"urn:scte:dash:cc:cea-708:2015\" \
             value=\"1=lang:und\"/>\n",
        );
    }
    format!("{}{tags}{}", &mpd[..set], &mpd[set..])
}

/// `mpd` with `query` (`name=value`, already fit for a URI and for XML)
/// added to its segment templates' `initialization` and `media` URLs and
/// to its `BaseURL`s (text tracks): how a signed URL's token is carried on
/// to the segments.
pub fn mpd_with_query(mpd: &str, query: &str) -> String {
    let mut out = mpd.to_string();
    for (attribute, end) in [
        (" initialization=\"", '"'),
        (" media=\"", '"'),
        ("<BaseURL>", '<'),
    ] {
        let mut done = String::with_capacity(out.len() + 256);
        let mut rest = out.as_str();
        while let Some(at) = rest.find(attribute) {
            let start = at + attribute.len();
            let Some(len) = rest[start..].find(end) else {
                break;
            };
            let uri = &rest[start..start + len];
            let joint = if uri.contains('?') { "&amp;" } else { "?" };
            done.push_str(&rest[..start + len]);
            done.push_str(joint);
            done.push_str(query);
            rest = &rest[start + len..];
        }
        done.push_str(rest);
        out = done;
    }
    out
}

/// A protected track's `ContentProtection` (ISO/IEC 23009-1 5.8.4.1, DASH-IF
/// IOP 7.5): the `cbcs` scheme with its key id, the W3C common system and
/// W3C ClearKey, each with the common `pssh`.
fn content_protection(out: &mut String, t: &TrackInfo) {
    let Some((_, kid)) = t.sealed else { return };
    let _ = writeln!(
        out,
        "        <ContentProtection schemeIdUri=\"urn:mpeg:dash:mp4protection:2011\" \
         value=\"cbcs\" cenc:default_KID=\"{}\"/>",
        uuid(&kid)
    );
    // The init data EME's ClearKey takes (W3C "cenc" initialization data:
    // the common pssh), for players that start a session from the MPD.
    let pssh = base64(&crate::packager::fmp4::common_pssh(&kid), false);
    for (system, value) in [
        ("1077efec-c0b2-4d02-ace3-3c1e52e2fb4b", "cenc"),
        ("e2719d58-a985-b3c9-781a-b030af78d30e", "ClearKey1.0"),
    ] {
        let _ = writeln!(
            out,
            "        <ContentProtection schemeIdUri=\"urn:uuid:{system}\" value=\"{value}\">\
             <cenc:pssh>{pssh}</cenc:pssh></ContentProtection>"
        );
    }
}

/// Base64 (RFC 4648 4), padded; with `url`, the URL alphabet unpadded
/// (RFC 4648 5, as JSON Web Keys have it).
pub fn base64(bytes: &[u8], url: bool) -> String {
    const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            let c = if i <= chunk.len() {
                match STANDARD[(n >> (18 - 6 * i) & 63) as usize] {
                    b'+' if url => '-',
                    b'/' if url => '_',
                    c => c as char,
                }
            } else if url {
                continue;
            } else {
                '='
            };
            out.push(c);
        }
    }
    out
}

/// 16 bytes as a UUID's text (8-4-4-4-12 hex digits).
pub fn uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn segment_template(out: &mut String, n: usize, t: &TrackInfo) {
    content_protection(out, t);
    let key_id = t.sealed.as_ref().map(|(id, _)| id.as_str());
    let _ = writeln!(
        out,
        "        <SegmentTemplate timescale=\"{}\" presentationTimeOffset=\"{}\" \
         initialization=\"{}\" media=\"{}\" startNumber=\"1\">",
        t.timescale,
        t.presentation_time_offset,
        keyed(init_name(n, t.kind), key_id),
        keyed(format!("seg$Number$_{n}_{}.m4s", t.kind.suffix()), key_id),
    );
    out.push_str("          <SegmentTimeline>\n");
    let mut i = 0;
    while i < t.timeline.len() {
        let (start, duration) = t.timeline[i];
        // A run of equal durations, each starting where the last ended.
        let mut repeat = 0;
        while let Some(&(next, d)) = t.timeline.get(i + repeat + 1) {
            if d != duration || next != start + (repeat as u64 + 1) * duration {
                break;
            }
            repeat += 1;
        }
        let _ = write!(out, "            <S t=\"{start}\" d=\"{duration}\"");
        if repeat > 0 {
            let _ = write!(out, " r=\"{repeat}\"");
        }
        out.push_str("/>\n");
        i += repeat + 1;
    }
    out.push_str("          </SegmentTimeline>\n        </SegmentTemplate>\n");
}

/// An xs:duration of seconds, to the millisecond.
fn xs_duration(seconds: f64) -> String {
    let millis = (seconds.max(0.0) * 1000.0).round() as u64;
    format!("PT{}.{:03}S", millis / 1000, millis % 1000)
}

/// A DASH FrameRateType: an integer, or a fraction (30000/1001).
fn frame_rate(fps: f64) -> String {
    let whole = fps.round();
    if (fps - whole).abs() < 0.001 {
        return format!("{whole}");
    }
    let ntsc = (fps * 1.001).round();
    if (fps - ntsc / 1.001).abs() < 0.001 {
        return format!("{}/1001", ntsc as u64 * 1000);
    }
    format!("{}/1000", (fps * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protected_preroll_before_clear_content_ends_its_key() {
        let playlist = |prefix: &str, keyed: bool| {
            let key = if keyed {
                "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:x\"\n"
            } else {
                ""
            };
            format!(
                "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:1\n\
                 #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"{prefix}init.mp4\"\n{key}\
                 #EXTINF:4.000,\n{prefix}seg1.m4s\n#EXT-X-ENDLIST\n",
                if keyed { 4 } else { 7 }
            )
        };
        let joined = media_playlist_after(&playlist("/ad/", true), &playlist("", false));
        assert_eq!(
            joined,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:7\n#EXT-X-MEDIA-SEQUENCE:1\n\
             #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"/ad/init.mp4\"\n\
             #EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:x\"\n#EXTINF:4.000,\n/ad/seg1.m4s\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-KEY:METHOD=NONE\n\
             #EXTINF:4.000,\nseg1.m4s\n#EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn a_preroll_is_a_period_before_the_contents() {
        let mpd = |cenc: &str, body: &str, duration: &str| {
            format!(
                "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"{cenc} type=\"static\" \
                 mediaPresentationDuration=\"{duration}\">\n  <Period id=\"0\" start=\"PT0S\">\n\
                 {body}  </Period>\n</MPD>\n"
            )
        };
        let cenc = " xmlns:cenc=\"urn:mpeg:cenc:2013\"";
        let joined = mpd_after_preroll(
            &mpd(cenc, "    <AdaptationSet id=\"ad\"/>\n", "PT4.000S"),
            "/cmaf/ads/a.mp4/",
            4.0,
            &mpd("", "    <AdaptationSet id=\"main\"/>\n", "PT10.000S"),
            10.0,
        );
        assert_eq!(
            joined,
            format!(
                "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"{cenc} type=\"static\" \
                 mediaPresentationDuration=\"PT14.000S\">\n  <Period id=\"preroll\" start=\"PT0S\">\n\
                 \x20   <BaseURL>/cmaf/ads/a.mp4/</BaseURL>\n    <AdaptationSet id=\"ad\"/>\n  </Period>\n\
                 \x20 <Period id=\"0\" start=\"PT4.000S\">\n    <AdaptationSet id=\"main\"/>\n\
                 \x20 </Period>\n</MPD>\n"
            )
        );
    }

    #[test]
    fn base64_is_rfc_4648() {
        // RFC 4648 10's test vectors, and the URL alphabet.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes(), false), coded);
            assert_eq!(base64(plain.as_bytes(), true), coded.trim_end_matches('='));
        }
        assert_eq!(base64(&[0xfb, 0xff], false), "+/8=");
        assert_eq!(base64(&[0xfb, 0xff], true), "-_8");
    }

    #[test]
    fn a_query_is_carried_to_the_segment_templates() {
        let mpd = "<SegmentTemplate timescale=\"90000\" initialization=\"init_0_v.mp4\" \
                   media=\"seg$Number$_0_v.m4s\" startNumber=\"1\">";
        assert_eq!(
            mpd_with_query(mpd, "t=1~2"),
            "<SegmentTemplate timescale=\"90000\" initialization=\"init_0_v.mp4?t=1~2\" \
             media=\"seg$Number$_0_v.m4s?t=1~2\" startNumber=\"1\">"
        );
    }

    #[test]
    fn frame_rates_and_durations_are_schema_types() {
        assert_eq!(frame_rate(30.0), "30");
        assert_eq!(frame_rate(29.97003), "30000/1001");
        assert_eq!(frame_rate(12.5), "12500/1000");
        assert_eq!(xs_duration(6.0215), "PT6.022S");
    }

    #[test]
    fn timelines_fold_runs_of_equal_segments() {
        let track = TrackInfo {
            kind: TrackKind::Audio(0),
            codec: "mp4a.40.2".into(),
            bandwidth: 1,
            average_bandwidth: 1,
            resolution: None,
            frame_rate: None,
            language: "eng".into(),
            channels: 2,
            sample_rate: 48_000,
            timescale: 48_000,
            timeline: vec![(10, 5), (15, 5), (20, 5), (25, 3), (28, 3), (40, 3)],
            presentation_time_offset: 10,
            independent: true,
            sealed: None,
            trick_bandwidth: None,
        };
        let mut out = String::new();
        segment_template(&mut out, 0, &track);
        assert!(
            out.contains(
                "<S t=\"10\" d=\"5\" r=\"2\"/>\n            <S t=\"25\" d=\"3\" r=\"1\"/>\n            \
                 <S t=\"40\" d=\"3\"/>\n"
            ),
            "{out}"
        );
    }
}
