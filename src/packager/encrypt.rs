//! Segment encryption.
//!
//! - HLS method AES-128 (RFC 8216 4.3.2.4 and 5.2): a whole segment
//!   encrypted with AES-128 (FIPS 197) in CBC mode, padded with PKCS7 (RFC
//!   5652 6.3). Without an `IV` attribute in `EXT-X-KEY`, a segment's IV is
//!   its media sequence number, big-endian in 16 bytes (RFC 8216 5.2), so
//!   any segment can be encrypted alone.
//! - Common Encryption scheme `cbcs` (ISO/IEC 23001-7:2016 10.4) for fMP4
//!   samples: AES-128-CBC with a constant IV, started again for each
//!   subsample; video NAL units keep their length field and first bytes in
//!   the clear and are encrypted in the pattern 1:9 (one 16-byte block in
//!   ten), audio samples every whole block (pattern 0:0); a partial last
//!   block stays clear.

use std::io::{self, Write};

use aes::cipher::{BlockModeEncrypt, KeyIvInit};

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;

/// AES's block, bytes.
const BLOCK: usize = 16;
/// Plain bytes gathered before they are encrypted and written on.
const BATCH: usize = 64 << 10;

/// An AES-128 key.
pub type Key = [u8; 16];

/// The IV of the segment with media sequence number `sequence` (RFC 8216
/// 5.2: the sequence number as a 128-bit big-endian integer).
pub fn sequence_iv(sequence: u64) -> [u8; 16] {
    u128::from(sequence).to_be_bytes()
}

/// How long `len` plain bytes are once encrypted: PKCS7 always adds 1 to
/// 16 bytes.
pub fn encrypted_len(len: u64) -> u64 {
    len / BLOCK as u64 * BLOCK as u64 + BLOCK as u64
}

/// Encrypts what is written to it into `out`; [`Encrypting::finish`] pads
/// and writes the last block.
pub struct Encrypting<'a> {
    cipher: Aes128CbcEnc,
    out: &'a mut dyn Write,
    /// Plain bytes not encrypted yet.
    pending: Vec<u8>,
}

impl<'a> Encrypting<'a> {
    pub fn new(key: &Key, iv: &[u8; 16], out: &'a mut dyn Write) -> Self {
        Encrypting {
            cipher: Aes128CbcEnc::new(key.into(), iv.into()),
            out,
            pending: Vec::with_capacity(BATCH + BLOCK),
        }
    }

    /// Encrypts and writes on the whole blocks gathered.
    fn flush_blocks(&mut self) -> io::Result<()> {
        let whole = self.pending.len() / BLOCK * BLOCK;
        let (blocks, _) = aes::cipher::Array::slice_as_chunks_mut(&mut self.pending[..whole]);
        self.cipher.encrypt_blocks(blocks);
        self.out.write_all(&self.pending[..whole])?;
        self.pending.drain(..whole);
        Ok(())
    }

    /// Pads (PKCS7: N bytes of value N, 1 to 16) and writes the last block.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush_blocks()?;
        let pad = BLOCK - self.pending.len();
        self.pending.resize(BLOCK, pad as u8);
        self.flush_blocks()
    }
}

impl Write for Encrypting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= BATCH {
            self.flush_blocks()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One subsample (ISO/IEC 23001-7 7.2): clear bytes, then protected ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subsample {
    pub clear: u16,
    pub protected: u32,
}

/// Bytes of a slice NAL unit left in the clear after its length field:
/// its header and slice header, taken to fit in 32 bytes as Apple's
/// SAMPLE-AES for MPEG-TS has it for H.264.
const NAL_CLEAR_LEADER: usize = 32;

/// Whether a NAL unit of the header byte `first` carries slice data:
/// H.264 types 1 to 5 (ISO/IEC 14496-10 7.4.1), HEVC types 0 to 31
/// (ISO/IEC 23008-2 7.4.2.2).
fn is_slice(first: u8, hevc: bool) -> bool {
    if hevc {
        (first >> 1) & 0x3f < 32
    } else {
        (1..=5).contains(&(first & 0x1f))
    }
}

/// Subsamples a sample may have: its `saiz` size, 2 + 6 a subsample,
/// must fit in a byte.
const MAX_SUBSAMPLES: usize = 42;

/// The subsamples of a length-prefixed H.264 or HEVC sample: each slice
/// NAL unit's body protected, as whole blocks (what is left of a block
/// goes to the next clear run), everything else clear; once no more fit in
/// [`MAX_SUBSAMPLES`], the rest clear. `None` when the NAL lengths do not
/// add up to the sample.
pub fn video_subsamples(sample: &[u8], length_size: usize, hevc: bool) -> Option<Vec<Subsample>> {
    let mut out = Vec::new();
    let mut clear = 0usize;
    let mut at = 0usize;
    while at < sample.len() {
        let field = sample.get(at..at + length_size)?;
        let len = field
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let body = sample.get(at + length_size..at + length_size + len)?;
        // Room kept for the rest of the sample as clear subsamples, should
        // nothing more be protected.
        let rest = clear + sample.len() - at;
        let full = out.len() + 2 + rest / usize::from(u16::MAX) >= MAX_SUBSAMPLES;
        at += length_size + len;
        let protected = body.len().saturating_sub(NAL_CLEAR_LEADER) / BLOCK * BLOCK;
        if protected == 0 || full || !is_slice(body[0], hevc) {
            clear += length_size + len;
            continue;
        }
        clear += length_size + NAL_CLEAR_LEADER;
        push_clear(&mut out, &mut clear);
        out.push(Subsample {
            clear: clear as u16,
            protected: protected as u32,
        });
        clear = len - NAL_CLEAR_LEADER - protected;
    }
    if clear > 0 {
        push_clear(&mut out, &mut clear);
        out.push(Subsample {
            clear: clear as u16,
            protected: 0,
        });
    }
    debug_assert!(out.len() <= MAX_SUBSAMPLES);
    Some(out)
}

/// Leaves at most `u16::MAX` in `clear`, the rest as clear-only subsamples.
fn push_clear(out: &mut Vec<Subsample>, clear: &mut usize) {
    while *clear > usize::from(u16::MAX) {
        out.push(Subsample {
            clear: u16::MAX,
            protected: 0,
        });
        *clear -= usize::from(u16::MAX);
    }
}

/// Encrypts `sample` in place with `cbcs`: each subsample's protected
/// bytes (all of the sample when `subsamples` is empty) from `iv`, in the
/// pattern `crypt`:`skip` blocks (0:0: every block).
pub fn encrypt_cbcs(
    key: &Key,
    iv: &[u8; 16],
    sample: &mut [u8],
    subsamples: &[Subsample],
    (crypt, skip): (usize, usize),
) {
    let protect = |range: &mut [u8]| {
        let mut cipher = Aes128CbcEnc::new(key.into(), iv.into());
        let blocks = range.len() / BLOCK;
        let (crypt, skip) = if crypt == 0 && skip == 0 {
            (blocks.max(1), 0)
        } else {
            (crypt, skip)
        };
        let mut block = 0;
        while block < blocks {
            let n = crypt.min(blocks - block);
            let bytes = &mut range[block * BLOCK..(block + n) * BLOCK];
            let (whole, _) = aes::cipher::Array::slice_as_chunks_mut(bytes);
            cipher.encrypt_blocks(whole);
            block += n + skip;
        }
    };
    if subsamples.is_empty() {
        protect(sample);
        return;
    }
    let mut at = 0;
    for s in subsamples {
        at += usize::from(s.clear);
        let end = (at + s.protected as usize).min(sample.len());
        protect(&mut sample[at.min(end)..end]);
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice NAL unit of `len` body bytes (type 5, IDR) and an SEI of 10,
    /// with 4-byte lengths.
    fn sample(slice: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, len) in [(6u8, 10usize), (0x65, slice)] {
            out.extend_from_slice(&(len as u32).to_be_bytes());
            out.push(kind);
            out.extend((1..len).map(|i| i as u8));
        }
        out
    }

    #[test]
    fn many_slices_and_long_clear_runs_stay_within_the_subsamples_a_byte_can_size() {
        // 60 slices of 2 kB, then a 200 kB SEI: no more than 42 subsamples,
        // all bytes accounted for.
        let mut s = Vec::new();
        for _ in 0..60 {
            s.extend_from_slice(&2048u32.to_be_bytes());
            s.push(0x65);
            s.extend(std::iter::repeat_n(1u8, 2047));
        }
        s.extend_from_slice(&200_000u32.to_be_bytes());
        s.push(6);
        s.extend(std::iter::repeat_n(2u8, 199_999));
        let subsamples = video_subsamples(&s, 4, false).unwrap();
        assert!(subsamples.len() <= MAX_SUBSAMPLES, "{}", subsamples.len());
        assert!(subsamples.iter().filter(|s| s.protected > 0).count() >= 30);
        let total: usize = subsamples
            .iter()
            .map(|s| usize::from(s.clear) + s.protected as usize)
            .sum();
        assert_eq!(total, s.len());
    }

    #[test]
    fn slices_are_protected_as_whole_blocks_after_their_leader() {
        let s = sample(32 + 16 * 20 + 5);
        let subsamples = video_subsamples(&s, 4, false).unwrap();
        assert_eq!(
            subsamples,
            [
                Subsample {
                    clear: 4 + 10 + 4 + 32,
                    protected: 16 * 20
                },
                Subsample {
                    clear: 5,
                    protected: 0
                }
            ]
        );
        let total: usize = subsamples
            .iter()
            .map(|s| usize::from(s.clear) + s.protected as usize)
            .sum();
        assert_eq!(total, s.len());
        // Too short to protect anything: all clear; lengths that overrun: None.
        assert_eq!(
            video_subsamples(&sample(40), 4, false).unwrap(),
            [Subsample {
                clear: 4 + 10 + 4 + 40,
                protected: 0
            }]
        );
        assert_eq!(video_subsamples(&s[..s.len() - 1], 4, false), None);
    }

    /// Decrypting as Chromium's cbcs decryptor does (each subsample from
    /// the IV, crypt:skip blocks) gives the sample back, and the pattern
    /// leaves 9 blocks in 10 as they were.
    #[test]
    fn cbcs_encrypts_one_block_in_ten_per_subsample_from_the_iv() {
        use aes::cipher::BlockModeDecrypt;
        let key = [3; 16];
        let iv = [9; 16];
        let plain = sample(32 + 16 * 25 + 7);
        let subsamples = video_subsamples(&plain, 4, false).unwrap();
        let mut sealed = plain.clone();
        encrypt_cbcs(&key, &iv, &mut sealed, &subsamples, (1, 9));
        let start = usize::from(subsamples[0].clear);
        for b in 0..25 {
            let range = start + b * 16..start + (b + 1) * 16;
            assert_eq!(
                sealed[range.clone()] == plain[range],
                b % 10 != 0,
                "block {b}"
            );
        }
        assert_eq!(sealed[..start], plain[..start]);
        // Decrypt the encrypted blocks, chained, from the IV.
        let mut opened = sealed.clone();
        let mut cipher = cbc::Decryptor::<aes::Aes128>::new((&key).into(), (&iv).into());
        for b in (0..25).step_by(10) {
            let range = start + b * 16..start + (b + 1) * 16;
            let (blocks, _) = aes::cipher::Array::slice_as_chunks_mut(&mut opened[range]);
            cipher.decrypt_blocks(blocks);
        }
        assert_eq!(opened, plain);
        // Audio: every whole block, the partial one clear.
        let mut audio = vec![5u8; 40];
        encrypt_cbcs(&key, &iv, &mut audio, &[], (0, 0));
        assert_ne!(audio[..32], [5; 32]);
        assert_eq!(audio[32..], [5; 8]);
    }

    fn encrypt(key: &Key, iv: &[u8; 16], plain: &[u8], pieces: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = Encrypting::new(key, iv, &mut out);
        for piece in plain.chunks(pieces.max(1)) {
            writer.write_all(piece).unwrap();
        }
        writer.finish().unwrap();
        out
    }

    /// NIST SP 800-38A F.2.1, CBC-AES128.Encrypt: the four blocks, then
    /// the block PKCS7 adds to 64 bytes (16 bytes of 0x10).
    #[test]
    fn the_published_cbc_aes128_example_encrypts_as_published() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let key: Key = hex("2b7e151628aed2a6abf7158809cf4f3c").try_into().unwrap();
        let iv: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
        let plain = hex(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
             30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        );
        let cipher = hex(
            "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2\
             73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
        );
        for pieces in [1, 7, 16, 64] {
            let out = encrypt(&key, &iv, &plain, pieces);
            assert_eq!(out.len() as u64, encrypted_len(64));
            assert_eq!(out[..64], cipher[..], "written {pieces} bytes at a time");
        }
    }

    #[test]
    fn every_length_pads_to_the_next_block_and_batches_change_nothing() {
        let key = [7; 16];
        let iv = sequence_iv(42);
        assert_eq!(iv[15], 42);
        assert_eq!(iv[..15], [0; 15]);
        let plain: Vec<u8> = (0..(3 * BATCH + 5)).map(|i| (i % 251) as u8).collect();
        let whole = encrypt(&key, &iv, &plain, plain.len());
        assert_eq!(whole.len() as u64, encrypted_len(plain.len() as u64));
        assert_eq!(encrypt(&key, &iv, &plain, 1000), whole);
        for len in [0, 1, 15, 16, 17] {
            assert_eq!(
                encrypt(&key, &iv, &plain[..len], 3).len() as u64,
                encrypted_len(len as u64)
            );
        }
    }
}
