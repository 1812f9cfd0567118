//! AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1): enough of it to write ADTS
//! headers (ISO/IEC 13818-7 6.2) and the RFC 6381 codec string.

use crate::packager::index::{AudioCodec, AudioConfig};

/// 14496-3 Table 1.18: samplingFrequencyIndex to Hz.
pub const SAMPLING_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }

    fn left(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    fn object_type(&mut self) -> Option<u32> {
        match self.read(5)? {
            31 => Some(32 + self.read(6)?),
            aot => Some(aot),
        }
    }

    /// A samplingFrequencyIndex, or 15 followed by an explicit 24-bit rate.
    fn sampling(&mut self) -> Option<(u8, u32)> {
        let index = self.read(4)? as u8;
        if index == 15 {
            let rate = self.read(24)?;
            let index = SAMPLING_RATES.iter().position(|&r| r == rate).unwrap_or(15);
            Some((index as u8, rate))
        } else {
            Some((index, *SAMPLING_RATES.get(usize::from(index))?))
        }
    }
}

/// The audio configuration of an AAC track, or why ADTS cannot carry it.
pub fn parse_audio_specific_config(asc: &[u8]) -> Result<AudioConfig, String> {
    let mut b = Bits { data: asc, pos: 0 };
    parse(&mut b).ok_or_else(|| "AudioSpecificConfig is truncated or invalid".to_string())?
}

fn parse(b: &mut Bits) -> Option<Result<AudioConfig, String>> {
    let mut aot = b.object_type()?;
    let (mut sampling_index, mut sample_rate) = b.sampling()?;
    let channel_config = b.read(4)? as u8;
    // Explicit SBR/PS signalling: the core object type and rate follow.
    let mut extension = None;
    if aot == 5 || aot == 29 {
        extension = Some(aot);
        let (_, ext_rate) = b.sampling()?;
        sample_rate = ext_rate;
        aot = b.object_type()?;
    } else if [1, 2, 3, 4].contains(&aot) && b.left() >= 3 {
        // GASpecificConfig (14496-3 4.4.1): frameLengthFlag,
        // dependsOnCoreCoder (+14 bits), extensionFlag.
        b.read(1)?;
        if b.read(1)? == 1 {
            b.read(14)?;
        }
        b.read(1)?;
        // Backward-compatible signalling (14496-3 1.6.5.2): a sync extension
        // 0x2b7 announcing SBR, and 0x548 announcing PS.
        if b.left() >= 16 && b.read(11)? == 0x2b7 && b.object_type()? == 5 && b.read(1)? == 1 {
            extension = Some(5);
            let (_, ext_rate) = b.sampling()?;
            sample_rate = ext_rate;
            if b.left() >= 12 && b.read(11)? == 0x548 && b.read(1)? == 1 {
                extension = Some(29);
            }
        }
    }
    if !(1..=4).contains(&aot) {
        return Some(Err(format!(
            "AAC object type {aot} cannot be carried in ADTS"
        )));
    }
    if sampling_index > 12 {
        return Some(Err(format!(
            "AAC sampling rate {sample_rate} Hz has no ADTS index"
        )));
    }
    if channel_config == 0 || channel_config > 7 {
        return Some(Err(format!(
            "AAC channel configuration {channel_config} cannot be carried in ADTS"
        )));
    }
    // The core rate is what ADTS carries; an SBR decoder doubles it itself.
    if extension.is_none() {
        sample_rate = SAMPLING_RATES[usize::from(sampling_index)];
    } else {
        sampling_index = sampling_index.min(12);
    }
    let channels = match channel_config {
        7 => 8,
        n => u16::from(n),
    };
    Some(Ok(AudioConfig {
        codec: AudioCodec::Aac {
            profile: (aot - 1) as u8,
            sampling_index,
            channel_config,
        },
        sample_rate,
        channels,
        codec_string: format!("mp4a.40.{}", extension.unwrap_or(aot)),
        config: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_lc_44100_stereo() {
        let c = parse_audio_specific_config(&[0x12, 0x10]).unwrap();
        assert_eq!(c.codec_string, "mp4a.40.2");
        assert_eq!(c.sample_rate, 44100);
        assert_eq!(
            c.codec,
            AudioCodec::Aac {
                profile: 1,
                sampling_index: 4,
                channel_config: 2
            }
        );
    }

    #[test]
    fn explicit_he_aac_keeps_core_rate_for_adts() {
        // AOT 5, 24 kHz, stereo, extension 48 kHz, core AOT 2.
        let c = parse_audio_specific_config(&[0x2b, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!(c.codec_string, "mp4a.40.5");
        assert_eq!(c.sample_rate, 48000);
        assert!(matches!(
            c.codec,
            AudioCodec::Aac {
                profile: 1,
                sampling_index: 6,
                ..
            }
        ));
    }

    #[test]
    fn truncated_config_is_an_error() {
        assert!(parse_audio_specific_config(&[0x12]).is_err());
    }

    #[test]
    fn program_config_element_is_unsupported() {
        assert!(parse_audio_specific_config(&[0x12, 0x00]).is_err());
    }
}
