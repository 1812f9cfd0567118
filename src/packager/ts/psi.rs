//! Program specific information (ISO/IEC 13818-1 2.4.4): one program, its
//! PAT and PMT, with the MPEG-2 CRC-32 (Annex A).

use super::packet::{write_payload, Adaptation, ContinuityCounter, Pid};

pub const PMT_PID: Pid = Pid::new(0x1000);
const PROGRAM_NUMBER: u16 = 1;

/// An elementary stream as the PMT lists it (2.4.4.8).
pub struct EsInfo {
    pub stream_type: u8,
    pub pid: Pid,
    pub descriptors: Vec<u8>,
}

pub fn write_pat(out: &mut Vec<u8>, cc: &mut ContinuityCounter) {
    let mut body = Vec::with_capacity(4);
    body.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
    body.extend_from_slice(&(0xe000 | PMT_PID.value()).to_be_bytes());
    write_section(out, Pid::PAT, cc, 0x00, 1, &body)
}

pub fn write_pmt(out: &mut Vec<u8>, cc: &mut ContinuityCounter, pcr_pid: Pid, streams: &[EsInfo]) {
    let mut body = Vec::new();
    body.extend_from_slice(&(0xe000 | pcr_pid.value()).to_be_bytes());
    body.extend_from_slice(&0xf000u16.to_be_bytes()); // program_info_length 0
    for es in streams {
        body.push(es.stream_type);
        body.extend_from_slice(&(0xe000 | es.pid.value()).to_be_bytes());
        body.extend_from_slice(&(0xf000 | es.descriptors.len() as u16).to_be_bytes());
        body.extend_from_slice(&es.descriptors);
    }
    write_section(out, PMT_PID, cc, 0x02, PROGRAM_NUMBER, &body)
}

/// Writes a long-form section in one packet, stuffed with 0xff (2.4.4.2).
fn write_section(
    out: &mut Vec<u8>,
    pid: Pid,
    cc: &mut ContinuityCounter,
    table_id: u8,
    id: u16,
    body: &[u8],
) {
    let mut payload = Vec::with_capacity(184);
    payload.push(0); // pointer_field
    let section_start = payload.len();
    payload.push(table_id);
    // section_syntax_indicator 1, '0', reserved '11', 12-bit section_length
    // counting the 5 header bytes after it, the body and the CRC.
    let section_length = (5 + body.len() + 4) as u16;
    payload.extend_from_slice(&(0xb000 | section_length).to_be_bytes());
    payload.extend_from_slice(&id.to_be_bytes());
    payload.push(0xc1); // reserved, version_number 0, current_next_indicator 1
    payload.push(0); // section_number
    payload.push(0); // last_section_number
    payload.extend_from_slice(body);
    let crc = crc32_mpeg2(&payload[section_start..]);
    payload.extend_from_slice(&crc.to_be_bytes());
    payload.resize(184, 0xff);
    write_payload(out, pid, cc, Adaptation::default(), &payload)
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32/MPEG-2: polynomial 0x04C11DB7, initial 0xFFFFFFFF, no reflection.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xffff_ffff, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[((crc >> 24) as u8 ^ b) as usize]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value() {
        // The catalogued check value of CRC-32/MPEG-2 for "123456789".
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn a_section_with_its_crc_checks_to_zero() {
        let mut out = Vec::new();
        write_pat(&mut out, &mut ContinuityCounter::default());
        let section_len = usize::from(u16::from_be_bytes([out[6], out[7]]) & 0x0fff);
        assert_eq!(crc32_mpeg2(&out[5..5 + 3 + section_len]), 0);
    }
}
