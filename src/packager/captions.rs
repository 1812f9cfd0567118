//! Closed captions carried in the video: CEA-608 and CEA-708 data in
//! ATSC A/53 user data (ANSI/SCTE 128-1 8.1, CEA-708 4.4), in SEI
//! messages of type 4, `user_data_registered_itu_t_t35` (H.264 D.1.6,
//! H.265 D.2.6), with country code 0xB5, provider 0x0031 and user
//! identifier `GA94`. They stay in the video as muxed; a master only has
//! to say they are there (RFC 8216 4.3.4.1 `CLOSED-CAPTIONS`), which is
//! found by looking at the first segments' SEI NAL units.

use crate::packager::index::VideoCodec;

/// What captions a stream carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Captions {
    /// CEA-608 on field 1 (CC1) and on field 2 (CC3).
    pub field1: bool,
    pub field2: bool,
    /// CEA-708 (DTVCC) packets.
    pub dtvcc: bool,
}

impl Captions {
    /// What either carries.
    pub fn merged(self, other: &Captions) -> Captions {
        Captions {
            field1: self.field1 || other.field1,
            field2: self.field2 || other.field2,
            dtvcc: self.dtvcc || other.dtvcc,
        }
    }

    pub fn any(&self) -> bool {
        self.field1 || self.field2 || self.dtvcc
    }

    /// The channels a master declares (RFC 8216 4.3.4.1 INSTREAM-ID).
    pub fn instream_ids(&self) -> Vec<&'static str> {
        let mut ids = Vec::new();
        if self.field1 {
            ids.push("CC1");
        }
        if self.field2 {
            ids.push("CC3");
        }
        if self.dtvcc {
            ids.push("SERVICE1");
        }
        ids
    }

    /// Adds what the NAL units of one sample (each after a big-endian
    /// length of `nal_length_size` bytes) carry. A malformed sample adds
    /// nothing: the TS writer reports it when it meets it.
    pub fn scan_sample(&mut self, codec: VideoCodec, nal_length_size: u8, sample: &[u8]) {
        let len_size = usize::from(nal_length_size);
        let mut rest = sample;
        while rest.len() > len_size {
            let len = rest[..len_size]
                .iter()
                .fold(0usize, |n, &b| (n << 8) | usize::from(b));
            let Some(nal) = rest.get(len_size..len_size + len) else {
                return;
            };
            rest = &rest[len_size + len..];
            let payload = match codec {
                // H.264 7.3.1: one header byte; type 6 is SEI.
                VideoCodec::H264 if nal.first().is_some_and(|b| b & 0x1f == 6) => &nal[1..],
                // H.265 7.3.1.2: two header bytes; 39 and 40 are SEI.
                VideoCodec::Hevc if nal.len() >= 2 && matches!((nal[0] >> 1) & 0x3f, 39 | 40) => {
                    &nal[2..]
                }
                _ => continue,
            };
            self.scan_sei(&unescaped(payload));
        }
    }

    /// The SEI messages of one SEI RBSP (H.264 7.3.2.3.1).
    fn scan_sei(&mut self, rbsp: &[u8]) {
        let mut at = 0;
        // Each message: type and size as runs of 0xFF plus a last byte.
        let number = |at: &mut usize| -> Option<usize> {
            let mut n = 0usize;
            loop {
                let b = *rbsp.get(*at)?;
                *at += 1;
                n += usize::from(b);
                if b != 0xff {
                    return Some(n);
                }
            }
        };
        while at < rbsp.len() && rbsp[at] != 0x80 {
            let (Some(kind), Some(size)) = (number(&mut at), number(&mut at)) else {
                return;
            };
            let Some(message) = rbsp.get(at..at + size) else {
                return;
            };
            at += size;
            if kind == 4 {
                self.scan_t35(message);
            }
        }
    }

    /// `user_data_registered_itu_t_t35` holding A/53 `cc_data()`.
    fn scan_t35(&mut self, message: &[u8]) {
        const GA94: [u8; 8] = [0xb5, 0x00, 0x31, b'G', b'A', b'9', b'4', 0x03];
        let Some(rest) = message.strip_prefix(&GA94[..]) else {
            return;
        };
        // process_em_data_flag, process_cc_data_flag, additional_data_flag,
        // cc_count (5 bits); em_data; then cc_count triples.
        let Some((&flags, rest)) = rest.split_first() else {
            return;
        };
        if flags & 0x40 == 0 {
            return;
        }
        let count = usize::from(flags & 0x1f);
        let Some(triples) = rest.get(1..1 + 3 * count) else {
            return;
        };
        for cc in triples.chunks_exact(3) {
            // marker bits (5), cc_valid, cc_type (2); two data bytes.
            let valid = cc[0] & 0x04 != 0;
            // A 608 pair of nulls (parity bits only) is padding.
            let data = (cc[1] & 0x7f) != 0 || (cc[2] & 0x7f) != 0;
            match cc[0] & 0x03 {
                0 if valid && data => self.field1 = true,
                1 if valid && data => self.field2 = true,
                2 | 3 if valid => self.dtvcc = true,
                _ => {}
            }
        }
    }
}

/// An RBSP from NAL unit payload bytes: each `00 00 03` loses its `03`
/// (H.264 7.4.1).
fn unescaped(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut zeros = 0;
    for &b in payload {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An H.264 SEI NAL unit with one A/53 message of `triples`.
    fn sei(triples: &[[u8; 3]]) -> Vec<u8> {
        let mut message = vec![0xb5, 0x00, 0x31, b'G', b'A', b'9', b'4', 0x03];
        message.push(0x40 | triples.len() as u8);
        message.push(0xff);
        for t in triples {
            message.extend(t);
        }
        message.push(0xff);
        // A first message of another type (5, user data unregistered),
        // sized with a run of 0xFF, before it.
        let mut nal = vec![0x06, 5, 0xff, 1];
        nal.extend([0x11; 256]);
        nal.extend([4, message.len() as u8]);
        nal.extend(message);
        nal.push(0x80);
        let mut sample = (nal.len() as u32).to_be_bytes().to_vec();
        sample.extend(nal);
        sample
    }

    fn scanned(sample: &[u8]) -> Captions {
        let mut found = Captions::default();
        found.scan_sample(VideoCodec::H264, 4, sample);
        found
    }

    #[test]
    fn a53_data_says_which_fields_and_services_carry_captions() {
        let field1 = scanned(&sei(&[[0xfc, 0xc8, 0xc5]]));
        assert_eq!(field1.instream_ids(), ["CC1"]);
        let both = scanned(&sei(&[[0xfd, 0x94, 0x20], [0xfe, 0x01, 0x02]]));
        assert_eq!(both.instream_ids(), ["CC3", "SERVICE1"]);
        // Padding (null pairs, cc_valid off) is no caption.
        let padding = scanned(&sei(&[[0xfc, 0x80, 0x80], [0xf8, 0xc8, 0xc5]]));
        assert!(!padding.any());
    }

    #[test]
    fn other_nal_units_and_broken_ones_add_nothing() {
        let mut slice = 5u32.to_be_bytes().to_vec();
        slice.extend([0x65, 0, 0, 0, 0]);
        assert!(!scanned(&slice).any());
        let mut cut = sei(&[[0xfc, 0xc8, 0xc5]]);
        cut.truncate(cut.len() - 8);
        assert!(!scanned(&cut).any());
        // A length past the end, a size past the message.
        assert!(!scanned(&[0, 0, 1, 0, 6]).any());
        assert!(!scanned(&[0, 0, 0, 4, 6, 4, 200, 0]).any());
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(
            unescaped(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            [0, 0, 1, 0, 0, 0, 3]
        );
    }
}
