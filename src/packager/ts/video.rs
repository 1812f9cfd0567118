//! Video access units for MPEG-TS: length-prefixed NAL units from the MP4
//! sample (ISO/IEC 14496-15) rewritten as an Annex B byte stream (ITU-T
//! H.264 / H.265 Annex B), as 13818-1 2.14 and 2.17 require.

use crate::packager::error::{Error, FourCc, Result};
use crate::packager::index::{VideoCodec, VideoConfig};

const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// H.264 access unit delimiter (7.3.2.4): nal_unit_type 9, primary_pic_type
/// 7 (any slice type), then the RBSP stop bit.
const H264_AUD: [u8; 2] = [0x09, 0xf0];
/// H.265 access unit delimiter (7.3.2.5): nal_unit_type 35, layer 0,
/// temporal id 1, pic_type 2 (any slice type), then the RBSP stop bit.
const HEVC_AUD: [u8; 3] = [0x46, 0x01, 0x50];

/// 13818-1 Table 2-34 stream_type values.
pub fn stream_type(config: &VideoConfig) -> u8 {
    match config.codec {
        VideoCodec::H264 => 0x1b,
        VideoCodec::Hevc => 0x24,
        // Never muxed (`MediaIndex::ts_refusal`): a private stream.
        VideoCodec::Av1 | VideoCodec::Vp9 => 0x06,
    }
}

/// Bytes [`write_access_unit`] writes at most for a sample whose NAL units
/// take `annexb_len` bytes with a 4-byte start code each (its size with
/// 4-byte NAL lengths): exactly that when it holds no AUD or empty NAL unit.
pub fn access_unit_len(config: &VideoConfig, annexb_len: usize, sync: bool) -> usize {
    let aud = START_CODE.len()
        + match config.codec {
            VideoCodec::H264 => H264_AUD.len(),
            VideoCodec::Hevc | VideoCodec::Av1 | VideoCodec::Vp9 => HEVC_AUD.len(),
        };
    let parameter_sets: usize = config
        .parameter_sets
        .iter()
        .map(|ps| START_CODE.len() + ps.len())
        .sum();
    aud + if sync { parameter_sets } else { 0 } + annexb_len
}

/// Appends one access unit in Annex B form: an AUD, the parameter sets when
/// `sync` (so every segment and every keyframe can start decoding), then the
/// sample's NAL units. AUDs already in the sample are dropped, since the AU
/// must begin with exactly one. `offset` locates the sample for errors.
pub fn write_access_unit(
    out: &mut Vec<u8>,
    config: &VideoConfig,
    sample: &[u8],
    sync: bool,
    offset: u64,
) -> Result<()> {
    out.extend_from_slice(&START_CODE);
    out.extend_from_slice(match config.codec {
        VideoCodec::H264 => &H264_AUD,
        VideoCodec::Hevc | VideoCodec::Av1 | VideoCodec::Vp9 => &HEVC_AUD,
    });
    if sync {
        for ps in &config.parameter_sets {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(ps);
        }
    }
    let len_size = usize::from(config.nal_length_size);
    if !matches!(len_size, 1 | 2 | 4) {
        // The index validator refuses these; without lengths the loop
        // below would never advance.
        return Err(Error::corrupt(
            FourCc(*b"mdat"),
            offset,
            format!("NAL length size {len_size}"),
        ));
    }
    let mut rest = sample;
    while !rest.is_empty() {
        let corrupt = |what: &str| Error::corrupt(FourCc(*b"mdat"), offset, what);
        if rest.len() < len_size {
            return Err(corrupt("video sample ends inside a NAL unit length"));
        }
        let nal_len = rest[..len_size]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        rest = &rest[len_size..];
        if nal_len > rest.len() {
            return Err(corrupt("NAL unit runs past the end of its video sample"));
        }
        let (nal, after) = rest.split_at(nal_len);
        rest = after;
        if nal.is_empty() || is_aud(config.codec, nal[0]) {
            continue;
        }
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    Ok(())
}

fn is_aud(codec: VideoCodec, header: u8) -> bool {
    match codec {
        VideoCodec::H264 => header & 0x1f == 9,
        VideoCodec::Hevc => (header >> 1) & 0x3f == 35,
        VideoCodec::Av1 | VideoCodec::Vp9 => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h264() -> VideoConfig {
        VideoConfig {
            codec: VideoCodec::H264,
            nal_length_size: 4,
            parameter_sets: vec![vec![0x67, 1, 2], vec![0x68, 3]],
            width: 16,
            height: 16,
            codec_string: "avc1.42c00a".into(),
            config: Vec::new(),
        }
    }

    #[test]
    fn keyframe_gets_aud_and_parameter_sets_and_in_band_aud_is_dropped() {
        let sample = [0, 0, 0, 2, 0x09, 0x10, 0, 0, 0, 3, 0x65, 0xaa, 0xbb];
        let mut out = Vec::new();
        write_access_unit(&mut out, &h264(), &sample, true, 0).unwrap();
        let want = [
            &[0, 0, 0, 1, 0x09, 0xf0][..],
            &[0, 0, 0, 1, 0x67, 1, 2],
            &[0, 0, 0, 1, 0x68, 3],
            &[0, 0, 0, 1, 0x65, 0xaa, 0xbb],
        ]
        .concat();
        assert_eq!(out, want);
    }

    #[test]
    fn non_keyframe_has_no_parameter_sets() {
        let mut out = Vec::new();
        write_access_unit(&mut out, &h264(), &[0, 0, 0, 1, 0x41], false, 0).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x41]);
    }

    #[test]
    fn nal_length_past_the_sample_is_an_error() {
        let mut out = Vec::new();
        let err =
            write_access_unit(&mut out, &h264(), &[0, 0, 1, 0, 0x41], false, 4242).unwrap_err();
        assert!(err.to_string().contains("4242"), "{err}");
        let err = write_access_unit(&mut out, &h264(), &[0, 0], false, 1).unwrap_err();
        assert!(err.to_string().contains("NAL unit length"), "{err}");
    }
}
