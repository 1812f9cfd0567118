//! Transport stream packets (ISO/IEC 13818-1 2.4.3): 188 bytes, a 4-byte
//! header, an optional adaptation field (PCR, random access, stuffing).

pub const PACKET_LEN: usize = 188;
const SYNC_BYTE: u8 = 0x47;

/// A 13-bit packet identifier (13818-1 Table 2-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pid(u16);

impl Pid {
    pub const PAT: Pid = Pid(0);

    pub const fn new(value: u16) -> Pid {
        assert!(value < 0x2000, "PIDs have 13 bits");
        Pid(value)
    }

    pub fn value(self) -> u16 {
        self.0
    }
}

/// The 4-bit continuity counter of one PID.
#[derive(Clone, Copy, Debug, Default)]
pub struct ContinuityCounter(u8);

impl ContinuityCounter {
    pub fn starting_at(value: u8) -> Self {
        ContinuityCounter(value & 0x0f)
    }

    fn next(&mut self) -> u8 {
        let cc = self.0;
        self.0 = (self.0 + 1) & 0x0f;
        cc
    }
}

/// Adaptation field content of a packet.
#[derive(Clone, Copy, Default)]
pub struct Adaptation {
    /// Program clock reference, in 90 kHz units (the 27 MHz extension is 0).
    pub pcr_90k: Option<u64>,
    pub random_access: bool,
}

impl Adaptation {
    /// Bytes the field takes besides stuffing, or 0 when none is needed.
    pub fn len(&self) -> usize {
        match (self.pcr_90k, self.random_access) {
            (None, false) => 0,
            (Some(_), _) => 8,
            (None, true) => 2,
        }
    }
}

/// Packets [`write_payload`] writes for `payload_len` bytes whose first
/// packet has an adaptation field of `first_af_len` bytes.
pub fn packets_for(payload_len: usize, first_af_len: usize) -> usize {
    let first_room = PACKET_LEN - 4 - first_af_len;
    1 + payload_len
        .saturating_sub(first_room)
        .div_ceil(PACKET_LEN - 4)
}

/// Splits `payload` into packets of `pid`, appended to `out`; the first
/// one has payload_unit_start_indicator set and carries `first`'s
/// adaptation field. The last packet is padded with adaptation-field
/// stuffing (2.4.3.5).
pub fn write_payload(
    out: &mut Vec<u8>,
    pid: Pid,
    cc: &mut ContinuityCounter,
    first: Adaptation,
    mut payload: &[u8],
) {
    let mut adaptation = first;
    let mut start = true;
    loop {
        let room = PACKET_LEN - 4 - adaptation.len();
        let take = payload.len().min(room);
        push_packet(out, pid, start, cc.next(), adaptation, &payload[..take]);
        payload = &payload[take..];
        if payload.is_empty() {
            return;
        }
        adaptation = Adaptation::default();
        start = false;
    }
}

/// Appends one packet: header, adaptation field and stuffing, payload.
fn push_packet(out: &mut Vec<u8>, pid: Pid, start: bool, cc: u8, af: Adaptation, payload: &[u8]) {
    let af_total = PACKET_LEN - 4 - payload.len();
    let control = if af_total == 0 { 0x10 } else { 0x30 };
    out.extend_from_slice(&[
        SYNC_BYTE,
        (u8::from(start) << 6) | (pid.0 >> 8) as u8,
        pid.0 as u8,
        control | cc,
    ]);
    if af_total > 0 {
        out.push((af_total - 1) as u8); // adaptation_field_length
        if af_total > 1 {
            let mut flags = 0;
            if af.random_access {
                flags |= 0x40;
            }
            if af.pcr_90k.is_some() {
                flags |= 0x10;
            }
            out.push(flags);
            let mut used = 2;
            if let Some(pcr) = af.pcr_90k {
                // program_clock_reference_base (33 bits), 6 reserved bits,
                // program_clock_reference_extension (9 bits, here 0).
                let base = pcr & 0x1_ffff_ffff;
                out.extend_from_slice(&[
                    (base >> 25) as u8,
                    (base >> 17) as u8,
                    (base >> 9) as u8,
                    (base >> 1) as u8,
                    ((base & 1) << 7) as u8 | 0x7e,
                    0x00,
                ]);
                used += 6;
            }
            // The rest of the field is stuffing.
            out.resize(out.len() + (af_total - used), 0xff);
        }
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_payload_length_makes_whole_packets() {
        for len in [
            0, 1, 170, 175, 176, 177, 182, 183, 184, 185, 366, 367, 368, 1000,
        ] {
            for af in [
                Adaptation::default(),
                Adaptation {
                    pcr_90k: Some(123_456),
                    random_access: true,
                },
                Adaptation {
                    pcr_90k: None,
                    random_access: true,
                },
            ] {
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut out = Vec::new();
                write_payload(
                    &mut out,
                    Pid::new(256),
                    &mut ContinuityCounter::default(),
                    af,
                    &payload,
                );
                assert_eq!(out.len() % PACKET_LEN, 0, "len {len}");
                assert_eq!(
                    out.len() / PACKET_LEN,
                    packets_for(len, af.len()),
                    "len {len}"
                );
                // Read back: the payload bytes come out in order.
                let mut back = Vec::new();
                for (n, p) in out.chunks(PACKET_LEN).enumerate() {
                    assert_eq!(p[0], SYNC_BYTE);
                    assert_eq!(p[3] & 0x0f, n as u8 & 0x0f, "continuity");
                    let body = if p[3] & 0x20 != 0 {
                        5 + usize::from(p[4])
                    } else {
                        4
                    };
                    back.extend_from_slice(&p[body..]);
                }
                assert_eq!(back, payload, "len {len}");
            }
        }
    }
}
