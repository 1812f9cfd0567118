//! PES packets (ISO/IEC 13818-1 2.4.3.6): the header with PTS and DTS that
//! wraps each access unit (video) or group of frames (audio).

/// stream_id values (13818-1 Table 2-22).
pub const STREAM_ID_VIDEO: u8 = 0xe0;
pub const STREAM_ID_AUDIO: u8 = 0xc0;
/// private_stream_1, used for AC-3 and E-AC-3 (ATSC A/52 Annex A).
pub const STREAM_ID_PRIVATE_1: u8 = 0xbd;

/// Timestamps are 33-bit counters of a 90 kHz clock (2.4.3.7).
const TIMESTAMP_MASK: i64 = (1 << 33) - 1;

/// Bytes of the PES header [`write_header`] writes.
pub fn header_len(with_dts: bool) -> usize {
    if with_dts {
        19
    } else {
        14
    }
}

/// Appends a PES header for a payload of `payload_len` bytes. `dts_90k` is
/// written only when it differs from `pts_90k`.
pub fn write_header(
    out: &mut Vec<u8>,
    stream_id: u8,
    pts_90k: i64,
    dts_90k: i64,
    payload_len: usize,
) {
    let with_dts = dts_90k != pts_90k;
    let header_data_len: usize = if with_dts { 10 } else { 5 };
    // PES_packet_length counts the bytes after it; 0 means "unbounded",
    // which 2.4.3.7 allows only for video elementary streams.
    let packet_len = 3 + header_data_len + payload_len;
    let packet_len = if packet_len > usize::from(u16::MAX) {
        0
    } else {
        packet_len as u16
    };
    out.extend_from_slice(&[0x00, 0x00, 0x01, stream_id]);
    out.extend_from_slice(&packet_len.to_be_bytes());
    out.push(0x84); // '10', not scrambled, no priority, data_alignment_indicator 1
    out.push(if with_dts { 0xc0 } else { 0x80 }); // PTS_DTS_flags
    out.push(header_data_len as u8);
    if with_dts {
        write_timestamp(out, 0b0011, pts_90k);
        write_timestamp(out, 0b0001, dts_90k);
    } else {
        write_timestamp(out, 0b0010, pts_90k);
    }
}

/// Sets PES_packet_length of the PES packet that is all of `pes`.
pub fn set_packet_length(pes: &mut [u8]) {
    let len = u16::try_from(pes.len() - 6).unwrap_or(0);
    pes[4..6].copy_from_slice(&len.to_be_bytes());
}

/// A 33-bit timestamp in 5 bytes: a 4-bit prefix, then 3, 15 and 15 bits
/// each followed by a marker bit.
fn write_timestamp(out: &mut Vec<u8>, prefix: u8, t_90k: i64) {
    let t = (t_90k & TIMESTAMP_MASK) as u64;
    out.extend_from_slice(&[
        (prefix << 4) | (((t >> 30) as u8 & 0x07) << 1) | 1,
        (t >> 22) as u8,
        (((t >> 15) as u8) << 1) | 1,
        (t >> 7) as u8,
        ((t as u8) << 1) | 1,
    ]);
}

/// Reads back a timestamp written by [`write_timestamp`] (tests).
#[cfg(test)]
pub fn read_timestamp(b: &[u8]) -> i64 {
    (i64::from(b[0] >> 1 & 0x07) << 30)
        | (i64::from(b[1]) << 22)
        | (i64::from(b[2] >> 1) << 15)
        | (i64::from(b[3]) << 7)
        | i64::from(b[4] >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_wrap_at_33_bits() {
        for t in [
            0,
            1,
            126_000,
            (1 << 32) + 12_345,
            TIMESTAMP_MASK,
            TIMESTAMP_MASK + 5,
        ] {
            let mut out = Vec::new();
            write_header(&mut out, STREAM_ID_VIDEO, t, t - 3003, 100);
            assert_eq!(out[7], 0xc0);
            assert_eq!(read_timestamp(&out[9..14]), t & TIMESTAMP_MASK);
            assert_eq!(read_timestamp(&out[14..19]), (t - 3003) & TIMESTAMP_MASK);
            assert_eq!(out[9] >> 4, 0b0011);
            assert_eq!(out[14] >> 4, 0b0001);
        }
    }

    #[test]
    fn packet_length_counts_header_and_payload_or_is_zero_when_too_long() {
        let mut out = Vec::new();
        write_header(&mut out, STREAM_ID_AUDIO, 90_000, 90_000, 1000);
        assert_eq!(u16::from_be_bytes([out[4], out[5]]), 3 + 5 + 1000);
        assert_eq!(out.len(), 14);
        let mut out = Vec::new();
        write_header(&mut out, STREAM_ID_VIDEO, 90_000, 87_000, 70_000);
        assert_eq!(u16::from_be_bytes([out[4], out[5]]), 0);
        // Filled in afterwards.
        let mut out = Vec::new();
        write_header(&mut out, STREAM_ID_VIDEO, 90_000, 87_000, 0);
        out.resize(19 + 1000, 0);
        set_packet_length(&mut out);
        assert_eq!(u16::from_be_bytes([out[4], out[5]]), 13 + 1000);
        out.resize(19 + 70_000, 0);
        set_packet_length(&mut out);
        assert_eq!(u16::from_be_bytes([out[4], out[5]]), 0);
    }
}
