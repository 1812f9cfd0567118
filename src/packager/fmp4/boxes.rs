//! Writing ISO/IEC 14496-12 boxes into a buffer: a box is opened with a
//! placeholder size, filled, and its size set when it is closed.

/// Appends a box of type `fourcc` whose body `body` writes.
pub fn bx(out: &mut Vec<u8>, fourcc: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(fourcc);
    body(out);
    let size = u32::try_from(out.len() - at).expect("a box under 4 GiB");
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends a full box: version and 24 bits of flags before the body.
pub fn full(
    out: &mut Vec<u8>,
    fourcc: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    bx(out, fourcc, |out| {
        out.push(version);
        out.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(out);
    });
}

pub fn u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn zeros(out: &mut Vec<u8>, n: usize) {
    out.resize(out.len() + n, 0);
}

/// The unity matrix of mvhd and tkhd (14496-12 8.2.2.2).
pub fn unity_matrix(out: &mut Vec<u8>) {
    for v in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000u32] {
        u32(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_cover_the_box_and_its_children() {
        let mut out = Vec::new();
        bx(&mut out, b"moov", |out| {
            full(out, b"mvhd", 1, 0x00_0102, |out| u32(out, 7));
        });
        assert_eq!(
            out,
            [
                0, 0, 0, 24, b'm', b'o', b'o', b'v', 0, 0, 0, 16, b'm', b'v', b'h', b'd', 1, 0, 1,
                2, 0, 0, 0, 7
            ]
        );
    }
}
