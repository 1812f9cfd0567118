//! Audio frames for MPEG-TS: AAC as ADTS (ISO/IEC 13818-7 6.2, as 13818-1
//! 2.4.4.9 expects for stream_type 0x0F), MP3 as is, AC-3 and E-AC-3 as
//! private data with a registration descriptor (ATSC A/52 Annex A).

use crate::packager::error::{Error, FourCc, Result};
use crate::packager::index::{AudioCodec, AudioConfig};
use crate::packager::ts::pes::{STREAM_ID_AUDIO, STREAM_ID_PRIVATE_1};

const ADTS_HEADER_LEN: usize = 7;
/// Larger than any real audio access unit (AC-3 frames are at most 3 840
/// bytes, MP3 2 881, E-AC-3 syncframes 4 096), and small enough that a PES
/// of one frame keeps a PES_packet_length, which audio must have (2.4.3.7).
pub const MAX_FRAME_BYTES: usize = 32 << 10;
/// aac_frame_length is a 13-bit field counting the header too.
const ADTS_MAX_FRAME: usize = (1 << 13) - 1;

/// stream_type (13818-1 Table 2-34, A/52 Annex A), PES stream_id, and the
/// PMT descriptors for the audio stream.
pub fn stream_info(config: &AudioConfig) -> (u8, u8, Vec<u8>) {
    // registration_descriptor (13818-1 2.6.8): tag 5, length 4, format id.
    let registration = |id: &[u8; 4]| [&[0x05, 4][..], id].concat();
    match config.codec {
        AudioCodec::Aac { .. } => (0x0f, STREAM_ID_AUDIO, Vec::new()),
        // MPEG-1 audio for 32 kHz and up, MPEG-2 (LSF) audio below.
        AudioCodec::Mp3 if config.sample_rate >= 32_000 => (0x03, STREAM_ID_AUDIO, Vec::new()),
        AudioCodec::Mp3 => (0x04, STREAM_ID_AUDIO, Vec::new()),
        AudioCodec::Ac3 => (0x81, STREAM_ID_PRIVATE_1, registration(b"AC-3")),
        AudioCodec::Eac3 => (0x87, STREAM_ID_PRIVATE_1, registration(b"EAC3")),
        // Never muxed (`MediaIndex::ts_refusal`): a private stream.
        AudioCodec::Opus | AudioCodec::Flac => (0x06, STREAM_ID_PRIVATE_1, Vec::new()),
    }
}

/// Bytes [`write_frame`] adds to each frame.
pub fn header_len(config: &AudioConfig) -> usize {
    match config.codec {
        AudioCodec::Aac { .. } => ADTS_HEADER_LEN,
        _ => 0,
    }
}

/// Appends one audio frame as the TS carries it.
pub fn write_frame(
    out: &mut Vec<u8>,
    config: &AudioConfig,
    frame: &[u8],
    offset: u64,
) -> Result<()> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(Error::corrupt(
            FourCc(*b"mdat"),
            offset,
            format!(
                "audio frame of {} bytes (at most {MAX_FRAME_BYTES})",
                frame.len()
            ),
        ));
    }
    if let AudioCodec::Aac {
        profile,
        sampling_index,
        channel_config,
    } = config.codec
    {
        let len = frame.len() + ADTS_HEADER_LEN;
        if len > ADTS_MAX_FRAME {
            return Err(Error::corrupt(
                FourCc(*b"mdat"),
                offset,
                format!("AAC frame of {} bytes is too long for ADTS", frame.len()),
            ));
        }
        out.extend_from_slice(&[
            0xff, // syncword 0xFFF,
            0xf1, // MPEG-4, layer 0, protection_absent 1
            (profile << 6) | (sampling_index << 2) | (channel_config >> 2),
            ((channel_config & 3) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len as u8 & 7) << 5) | 0x1f, // buffer fullness 0x7FF (variable rate)
            0xfc,                          // ...and one raw_data_block
        ]);
    }
    out.extend_from_slice(frame);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adts_header_fields() {
        let config = AudioConfig {
            codec: AudioCodec::Aac {
                profile: 1,
                sampling_index: 4,
                channel_config: 2,
            },
            sample_rate: 44_100,
            channels: 2,
            codec_string: "mp4a.40.2".into(),
            config: Vec::new(),
        };
        let mut out = Vec::new();
        write_frame(&mut out, &config, &[0xaa; 300], 0).unwrap();
        assert_eq!(&out[..7], &[0xff, 0xf1, 0x50, 0x80, 0x26, 0x7f, 0xfc]);
        assert_eq!(out.len(), 307);
        assert!(write_frame(&mut out, &config, &[0; 8190], 0).is_err());
    }
}
