//! Sample descriptions (ISO/IEC 14496-12 8.5.2) and the codec configuration
//! boxes we carry into MPEG-TS: avcC (ISO/IEC 14496-15 5.3.3), hvcC
//! (14496-15 8.3.3), esds (ISO/IEC 14496-1 7.2.6), dac3 and dec3
//! (ETSI TS 102 366 F.4, F.6).

use super::cursor::Cursor;
use crate::packager::error::{FourCc, Result};
use crate::packager::index::{AudioCodec, AudioConfig, Codec, VideoCodec, VideoConfig};

/// The codec of a track's first sample description, or why we cannot carry it.
pub fn parse_stsd(mut c: Cursor) -> Result<Result<Codec, String>> {
    c.full_box()?;
    let count = c.u32("entry count")?;
    if count == 0 {
        return Err(c.error("no sample description"));
    }
    let Some(entry) = c.children().next() else {
        return Err(c.error("no sample description"));
    };
    let entry = entry?;
    let body = entry.body;
    Ok(match &entry.fourcc.0 {
        b"avc1" | b"avc3" | b"hvc1" | b"hev1" | b"av01" | b"vp09" => {
            Ok(parse_visual(body, entry.fourcc.0)?)
        }
        b"mp4a" | b".mp3" | b"ac-3" | b"ec-3" | b"Opus" | b"fLaC" => {
            parse_audio(body, entry.fourcc.0)?
        }
        b"encv" | b"enca" => Err("encrypted samples".to_string()),
        b"tx3g" | b"text" | b"wvtt" => Err(format!("{} text is read as subtitles", entry.fourcc)),
        _ => Err(format!("codec {} is not supported", entry.fourcc)),
    })
}

fn parse_visual(mut c: Cursor, fourcc: [u8; 4]) -> Result<Codec> {
    let codec = match &fourcc {
        b"avc1" | b"avc3" => VideoCodec::H264,
        b"av01" => VideoCodec::Av1,
        b"vp09" => VideoCodec::Vp9,
        _ => VideoCodec::Hevc,
    };
    // VisualSampleEntry (14496-12 12.1.3): 6 reserved, data_reference_index,
    // 16 bytes pre_defined/reserved, then width and height.
    c.skip(24, "visual sample entry")?;
    let width = c.u16("width")?;
    let height = c.u16("height")?;
    // resolutions, reserved, frame_count, compressorname, depth, pre_defined
    c.skip(50, "visual sample entry")?;
    let config_type: &[u8; 4] = match codec {
        VideoCodec::H264 => b"avcC",
        VideoCodec::Hevc => b"hvcC",
        VideoCodec::Av1 => b"av1C",
        VideoCodec::Vp9 => b"vpcC",
    };
    for child in c.children() {
        let child = child?;
        if &child.fourcc.0 == config_type {
            if child.body.remaining() == 0 {
                return Err(child
                    .body
                    .error("empty decoder configuration (Annex B samples in an MP4 track?)"));
            }
            let config = child.body.clone().rest().to_vec();
            let (nal_length_size, parameter_sets, codec_string) = match codec {
                VideoCodec::H264 => parse_avcc(child.body, fourcc)?,
                VideoCodec::Hevc => parse_hvcc(child.body, fourcc)?,
                VideoCodec::Av1 => (4, Vec::new(), av1_codec_string(child.body)?),
                VideoCodec::Vp9 => (4, Vec::new(), vp9_codec_string(child.body)?),
            };
            return Ok(Codec::Video(VideoConfig {
                codec,
                nal_length_size,
                parameter_sets,
                width,
                height,
                codec_string,
                config,
            }));
        }
    }
    Err(c.error(format!(
        "video sample entry has no '{}' box",
        String::from_utf8_lossy(config_type)
    )))
}

type NalConfig = (u8, Vec<Vec<u8>>, String);

/// `av01.P.LLT.DD` from an AV1CodecConfigurationRecord (AV1 in ISOBMFF,
/// 2.3.3; the codec string of its annex A).
fn av1_codec_string(mut c: Cursor) -> Result<String> {
    let marker = c.u8("marker and version")?;
    if marker != 0x81 {
        return Err(c.error(format!("av1C marker and version 0x{marker:02x}, not 0x81")));
    }
    let b = c.u8("seq_profile and seq_level_idx_0")?;
    let (profile, level) = (b >> 5, b & 0x1f);
    let flags = c.u8("seq_tier_0 and bit depth")?;
    let tier = if flags & 0x80 != 0 { 'H' } else { 'M' };
    let depth = match (flags & 0x40 != 0, flags & 0x20 != 0) {
        (false, _) => 8,
        (true, false) => 10,
        (true, true) => 12,
    };
    Ok(format!("av01.{profile}.{level:02}{tier}.{depth:02}"))
}

/// `vp09.PP.LL.DD` from a VPCodecConfigurationBox (VP Codec ISO Media File
/// Format Binding, 2.2 and its codec string).
fn vp9_codec_string(mut c: Cursor) -> Result<String> {
    let (version, _) = c.full_box()?;
    if version != 1 {
        return Err(c.error(format!("vpcC version {version}, not 1")));
    }
    let profile = c.u8("profile")?;
    let level = c.u8("level")?;
    let depth = c.u8("bitDepth")? >> 4;
    Ok(format!("vp09.{profile:02}.{level:02}.{depth:02}"))
}

/// The parameter set types (nal_unit_type) a decoder needs before the
/// first picture.
fn needed_parameter_sets(codec: VideoCodec) -> &'static [u8] {
    match codec {
        VideoCodec::H264 => &[7, 8],
        VideoCodec::Hevc => &[32, 33, 34],
        VideoCodec::Av1 | VideoCodec::Vp9 => &[],
    }
}

fn nal_type(codec: VideoCodec, nal: &[u8]) -> u8 {
    match codec {
        VideoCodec::H264 => nal[0] & 0x1f,
        _ => (nal[0] >> 1) & 0x3f,
    }
}

/// Whether `sets` hold every parameter set type `codec` needs.
pub fn has_parameter_sets(codec: VideoCodec, sets: &[Vec<u8>]) -> bool {
    needed_parameter_sets(codec)
        .iter()
        .all(|&t| sets.iter().any(|s| nal_type(codec, s) == t))
}

/// `v` with `sets` (found in its samples) in its configuration box in
/// place of the ones it had, written as avc1 or hvc1 (ISO/IEC 14496-15
/// 5.3.3, 8.3.3: all parameter sets in the sample entry, completeness set).
/// The box's other fields and other NAL arrays are kept.
pub fn with_parameter_sets(mut v: VideoConfig, sets: Vec<Vec<u8>>) -> Result<VideoConfig> {
    let c = Cursor::new(&v.config, 0, FourCc(*b"conf"));
    let (config, entry) = match v.codec {
        VideoCodec::H264 => (avcc_with(c, &sets)?, "avc1"),
        VideoCodec::Hevc => (hvcc_with(c, &sets)?, "hvc1"),
        VideoCodec::Av1 | VideoCodec::Vp9 => return Ok(v),
    };
    v.config = config;
    if let Some(rest) = v.codec_string.get(4..) {
        v.codec_string = format!("{entry}{rest}");
    }
    v.parameter_sets = sets;
    Ok(v)
}

fn push_nal(out: &mut Vec<u8>, nal: &[u8]) {
    out.extend_from_slice(&(nal.len() as u16).to_be_bytes());
    out.extend_from_slice(nal);
}

fn avcc_with(mut c: Cursor, sets: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut out = c.bytes(5, "avcC header")?.to_vec();
    let skip_list =
        |c: &mut Cursor, count: usize| -> Result<()> { read_nal_list(c, count, &mut Vec::new()) };
    let sps_count = c.u8("numOfSequenceParameterSets")? & 0x1f;
    skip_list(&mut c, usize::from(sps_count))?;
    let pps_count = c.u8("numOfPictureParameterSets")?;
    skip_list(&mut c, usize::from(pps_count))?;
    let of = |t: u8| sets.iter().filter(move |s| s[0] & 0x1f == t);
    out.push(0xe0 | of(7).count().min(31) as u8);
    of(7).take(31).for_each(|s| push_nal(&mut out, s));
    out.push(of(8).count().min(255) as u8);
    of(8).take(255).for_each(|s| push_nal(&mut out, s));
    // The chroma and bit depth fields of the High profiles.
    out.extend_from_slice(c.rest());
    Ok(out)
}

fn hvcc_with(mut c: Cursor, sets: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut out = c.bytes(22, "hvcC header")?.to_vec();
    let mut arrays: Vec<(u8, Vec<&[u8]>)> = Vec::new();
    for kind in [32, 33, 34] {
        let nals: Vec<&[u8]> = sets
            .iter()
            .filter(|s| (s[0] >> 1) & 0x3f == kind)
            .map(Vec::as_slice)
            .collect();
        if !nals.is_empty() {
            // array_completeness: every set of this type is here.
            arrays.push((0x80 | kind, nals));
        }
    }
    for _ in 0..c.u8("numOfArrays")? {
        let kind = c.u8("NAL_unit_type")?;
        let count = c.u16("numNalus")?;
        let mut nals = Vec::new();
        for _ in 0..count {
            let len = c.u16("NAL unit length")?;
            nals.push(c.bytes(usize::from(len), "NAL unit")?);
        }
        if !(32..=34).contains(&(kind & 0x3f)) {
            arrays.push((kind, nals));
        }
    }
    out.push(arrays.len() as u8);
    for (kind, nals) in arrays {
        out.push(kind);
        out.extend_from_slice(&(nals.len() as u16).to_be_bytes());
        nals.iter().for_each(|n| push_nal(&mut out, n));
    }
    Ok(out)
}

fn parse_avcc(mut c: Cursor, fourcc: [u8; 4]) -> Result<NalConfig> {
    c.u8("configurationVersion")?;
    let profile = c.u8("AVCProfileIndication")?;
    let compat = c.u8("profile_compatibility")?;
    let level = c.u8("AVCLevelIndication")?;
    let nal_length_size = (c.u8("lengthSizeMinusOne")? & 3) + 1;
    if nal_length_size == 3 {
        return Err(c.error("NAL length size 3 is not allowed"));
    }
    let mut sets = Vec::new();
    let sps_count = c.u8("numOfSequenceParameterSets")? & 0x1f;
    read_nal_list(&mut c, usize::from(sps_count), &mut sets)?;
    let pps_count = c.u8("numOfPictureParameterSets")?;
    read_nal_list(&mut c, usize::from(pps_count), &mut sets)?;
    let codec_string = format!(
        "{}.{profile:02x}{compat:02x}{level:02x}",
        String::from_utf8_lossy(&fourcc)
    );
    Ok((nal_length_size, sets, codec_string))
}

fn read_nal_list(c: &mut Cursor, count: usize, out: &mut Vec<Vec<u8>>) -> Result<()> {
    for _ in 0..count {
        let len = c.u16("parameter set length")?;
        let nal = c.bytes(usize::from(len), "parameter set")?;
        if !nal.is_empty() {
            out.push(nal.to_vec());
        }
    }
    Ok(())
}

fn parse_hvcc(mut c: Cursor, fourcc: [u8; 4]) -> Result<NalConfig> {
    c.u8("configurationVersion")?;
    let b = c.u8("general_profile")?;
    let (space, tier, profile) = (b >> 6, (b >> 5) & 1, b & 0x1f);
    let compat = c.u32("general_profile_compatibility_flags")?;
    let constraints = c.bytes(6, "general_constraint_indicator_flags")?;
    let level = c.u8("general_level_idc")?;
    // min_spatial_segmentation, parallelismType, chroma, bit depths, avgFrameRate
    c.skip(8, "hvcC fields")?;
    let nal_length_size = (c.u8("lengthSizeMinusOne")? & 3) + 1;
    if nal_length_size == 3 {
        return Err(c.error("NAL length size 3 is not allowed"));
    }
    let arrays = c.u8("numOfArrays")?;
    let mut sets = Vec::new();
    for _ in 0..arrays {
        c.u8("NAL_unit_type")?;
        let count = c.u16("numNalus")?;
        read_nal_list(&mut c, usize::from(count), &mut sets)?;
    }
    // ISO/IEC 14496-15 E.3: profile space letter, profile, the compatibility
    // flags in reverse bit order, tier and level, then the constraint bytes
    // without trailing zeros.
    let mut s = format!(
        "{}.{}{}.{:X}.{}{}",
        String::from_utf8_lossy(&fourcc),
        ["", "A", "B", "C"][usize::from(space)],
        profile,
        compat.reverse_bits(),
        if tier == 1 { 'H' } else { 'L' },
        level
    );
    let used = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for byte in &constraints[..used] {
        s.push_str(&format!(".{byte:X}"));
    }
    Ok((nal_length_size, sets, s))
}

fn parse_audio(mut c: Cursor, fourcc: [u8; 4]) -> Result<Result<Codec, String>> {
    // AudioSampleEntry (14496-12 12.2.3); QuickTime's versions 1 and 2 add
    // fields after the common part (QTFF "Sound Sample Description").
    c.skip(8, "audio sample entry")?;
    let qt_version = c.u16("sound version")?;
    c.skip(6, "audio sample entry")?;
    let mut channels = c.u16("channelcount")?;
    c.skip(6, "audio sample entry")?;
    let mut sample_rate = c.u32("samplerate")? >> 16;
    match qt_version {
        0 => {}
        1 => c.skip(16, "QuickTime sound v1 fields")?,
        2 => {
            c.skip(4, "QuickTime sound v2 fields")?;
            let rate = f64::from_bits(c.u64("audioSampleRate")?);
            channels = c.u32("numAudioChannels")? as u16;
            c.skip(20, "QuickTime sound v2 fields")?;
            if (1.0..1e6).contains(&rate) {
                sample_rate = rate as u32;
            }
        }
        v => return Err(c.error(format!("unknown sound sample description version {v}"))),
    }
    let mut config = None;
    let mut config_box = Vec::new();
    for child in c.children() {
        let child = child?;
        let body = || child.body.clone().rest().to_vec();
        config = match &child.fourcc.0 {
            b"esds" => {
                config_box = body();
                Some(parse_esds(child.body.clone(), sample_rate, channels)?)
            }
            // QuickTime wraps the esds in a 'wave' box.
            b"wave" => find_esds(child.body, sample_rate, channels, &mut config_box)?,
            b"dac3" if fourcc == *b"ac-3" => {
                config_box = body();
                Some(Ok(audio(AudioCodec::Ac3, "ac-3")))
            }
            b"dec3" if fourcc == *b"ec-3" => {
                config_box = body();
                Some(Ok(audio(AudioCodec::Eac3, "ec-3")))
            }
            b"dOps" if fourcc == *b"Opus" => {
                config_box = body();
                Some(Ok(audio(AudioCodec::Opus, "opus")))
            }
            b"dfLa" if fourcc == *b"fLaC" => {
                config_box = body();
                Some(Ok(audio(AudioCodec::Flac, "flac")))
            }
            _ => continue,
        };
        if config.is_some() {
            break;
        }
    }
    let config = match (config, &fourcc) {
        (Some(Err(why)), _) => return Ok(Err(why)),
        (Some(Ok(c)), _) => c,
        (None, b".mp3") => audio(AudioCodec::Mp3, "mp4a.40.34"),
        (None, b"ac-3") => audio(AudioCodec::Ac3, "ac-3"),
        (None, b"ec-3") => audio(AudioCodec::Eac3, "ec-3"),
        (None, b"Opus") => return Err(c.error("Opus sample entry has no 'dOps' box")),
        (None, b"fLaC") => return Err(c.error("FLAC sample entry has no 'dfLa' box")),
        (None, _) => return Err(c.error("audio sample entry has no 'esds' box")),
    };
    Ok(Ok(Codec::Audio(AudioConfig {
        config: config_box,
        sample_rate: if config.sample_rate != 0 {
            config.sample_rate
        } else {
            sample_rate
        },
        channels: if config.channels != 0 {
            config.channels
        } else {
            channels
        },
        ..config
    })))
}

fn audio(codec: AudioCodec, codec_string: &str) -> AudioConfig {
    AudioConfig {
        codec,
        sample_rate: 0,
        channels: 0,
        codec_string: codec_string.to_string(),
        config: Vec::new(),
    }
}

/// The esds in a QuickTime `wave` box; its body goes to `config_box`.
fn find_esds(
    mut wave: Cursor,
    rate: u32,
    channels: u16,
    config_box: &mut Vec<u8>,
) -> Result<Option<Result<AudioConfig, String>>> {
    for child in wave.children() {
        let child = child?;
        if &child.fourcc.0 == b"esds" {
            *config_box = child.body.clone().rest().to_vec();
            return parse_esds(child.body, rate, channels).map(Some);
        }
    }
    Ok(None)
}

/// Reads a descriptor header (14496-1 8.3.3): a tag and a length of one to
/// four 7-bit groups.
fn descriptor(c: &mut Cursor) -> Result<(u8, usize)> {
    let tag = c.u8("descriptor tag")?;
    let mut len = 0usize;
    for _ in 0..4 {
        let b = c.u8("descriptor length")?;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
    }
    Ok((tag, len))
}

/// The audio configuration of an esds box, or why we cannot carry it.
fn parse_esds(mut c: Cursor, rate: u32, channels: u16) -> Result<Result<AudioConfig, String>> {
    c.full_box()?;
    let (tag, _) = descriptor(&mut c)?;
    if tag != 0x03 {
        return Err(c.error(format!("expected ES_Descriptor (tag 3), found tag {tag}")));
    }
    c.u16("ES_ID")?;
    let flags = c.u8("ES flags")?;
    if flags & 0x80 != 0 {
        c.skip(2, "dependsOn_ES_ID")?;
    }
    if flags & 0x40 != 0 {
        let len = c.u8("URLlength")?;
        c.skip(usize::from(len), "URLstring")?;
    }
    if flags & 0x20 != 0 {
        c.skip(2, "OCR_ES_Id")?;
    }
    let (tag, _) = descriptor(&mut c)?;
    if tag != 0x04 {
        return Err(c.error(format!(
            "expected DecoderConfigDescriptor (tag 4), found tag {tag}"
        )));
    }
    let object_type = c.u8("objectTypeIndication")?;
    c.skip(12, "DecoderConfigDescriptor")?;
    match object_type {
        // 14496-1 Table 5: MPEG-4 audio, and MPEG-2 AAC main/LC/SSR.
        0x40 | 0x66..=0x68 => {
            let (tag, len) = descriptor(&mut c)?;
            if tag != 0x05 {
                return Err(c.error("AAC without a DecoderSpecificInfo"));
            }
            let asc = c.bytes(len, "AudioSpecificConfig")?;
            Ok(super::aac::parse_audio_specific_config(asc))
        }
        // MPEG-2 (0x69) and MPEG-1 (0x6B) audio: Layer III in practice.
        0x69 | 0x6b => Ok(Ok(AudioConfig {
            codec: AudioCodec::Mp3,
            sample_rate: rate,
            channels,
            codec_string: "mp4a.40.34".to_string(),
            config: Vec::new(),
        })),
        other => Ok(Err(format!(
            "audio object type 0x{other:02x} cannot be carried in MPEG-TS"
        ))),
    }
}
