//! HLS segment encryption, method AES-128 (RFC 8216 4.3.2.4 and 5.2):
//! a whole segment encrypted with AES-128 (FIPS 197) in CBC mode, padded
//! with PKCS7 (RFC 5652 6.3). Without an `IV` attribute in `EXT-X-KEY`, a
//! segment's IV is its media sequence number, big-endian in 16 bytes (RFC
//! 8216 5.2), so any segment can be encrypted alone.

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

#[cfg(test)]
mod tests {
    use super::*;

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
