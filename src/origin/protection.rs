//! Encrypted streams (`[protection]`): which sources are protected, and
//! their keys. A key is derived from the configured secret, so there is
//! no key database and every origin of a tier that shares the secret
//! answers the same key:
//!
//! ```text
//! key = first 16 bytes of HMAC-SHA256(secret, "casterpak aes-128 key|" + source path)
//! ```
//!
//! A CMAF (`cbcs`) stream's key, its id and its constant IV are derived the
//! same way, with labels of their own ([`Protection::sealing`]).
//!
//! The source path is the one in URLs (after `server.prefix`, a csmil
//! set's rendition expanded). It names the asset; a file replaced at the
//! same path keeps its key, so players in the middle of it go on.

use std::collections::HashMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::{self, ProtectionMethod};
use crate::packager::encrypt::Key;
use crate::packager::fmp4::Sealing;

/// What keys are derived under, so that a secret shared with other uses
/// never gives the same bytes.
const KEY_LABEL: &str = "casterpak aes-128 key|";

pub struct Protection {
    /// Whether the MPEG-TS form is served (AES-128), or refused
    /// (`sample-aes`: the CMAF form only).
    ts: bool,
    /// The id of the secret new playlists name.
    key_id: String,
    /// Secrets by id: the current one and the retired ones.
    secrets: HashMap<String, Vec<u8>>,
    /// Source path prefixes protected; empty: all.
    paths: Vec<String>,
}

impl Protection {
    /// The protection `config` asks for, or `None` for clear streams. The
    /// configuration was checked when it was loaded.
    pub fn new(config: &config::Protection) -> anyhow::Result<Option<Protection>> {
        if config.method == ProtectionMethod::None {
            return Ok(None);
        }
        let mut secrets = HashMap::new();
        secrets.insert(
            config.key_id.clone(),
            crate::tokens::read_key("protection.secret", &config.secret)?,
        );
        for (id, secret) in &config.retired {
            let key = crate::tokens::read_key(&format!("protection.retired.{id}"), secret)?;
            secrets.insert(id.clone(), key);
        }
        Ok(Some(Protection {
            ts: config.method == ProtectionMethod::Aes128,
            key_id: config.key_id.clone(),
            secrets,
            paths: config.paths.clone(),
        }))
    }

    /// Whether the streams of the source at `rel` are encrypted.
    pub fn covers(&self, rel: &str) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| rel.starts_with(p.as_str()))
    }

    /// Whether protected streams have an MPEG-TS form (AES-128).
    pub fn has_ts(&self) -> bool {
        self.ts
    }

    /// The id of the secret that new playlists and segments use.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key of the source at `rel` under the secret `key_id`, if that
    /// secret is known.
    pub fn key(&self, key_id: &str, rel: &str) -> Option<Key> {
        Some(derive(self.secrets.get(key_id)?, KEY_LABEL, rel))
    }

    /// The key of the source at `rel` that new segments are made with.
    pub fn current_key(&self, rel: &str) -> Key {
        self.key(&self.key_id, rel)
            .expect("the current secret is known")
    }

    /// How the fMP4 samples of the source at `rel` are encrypted (`cbcs`)
    /// under the secret `key_id`: a key, its id and a constant IV, each
    /// derived as the AES-128 key is, with labels of their own.
    pub fn sealing(&self, key_id: &str, rel: &str) -> Option<Sealing> {
        let secret = self.secrets.get(key_id)?;
        Some(Sealing {
            key: derive(secret, CBCS_KEY_LABEL, rel),
            kid: derive(secret, CBCS_KID_LABEL, rel),
            iv: derive(secret, CBCS_IV_LABEL, rel),
        })
    }
}

/// The first 16 bytes of HMAC-SHA256(`secret`, `label` + `rel`).
fn derive(secret: &[u8], label: &str, rel: &str) -> [u8; 16] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.update(rel.as_bytes());
    let mut out = [0; 16];
    out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
    out
}

/// Labels of what `cbcs` derives (see [`Protection::sealing`]).
const CBCS_KEY_LABEL: &str = "casterpak cbcs key|";
const CBCS_KID_LABEL: &str = "casterpak cbcs kid|";
const CBCS_IV_LABEL: &str = "casterpak cbcs iv|";

#[cfg(test)]
mod tests {
    use super::*;

    fn protection(paths: &[&str]) -> Protection {
        let mut retired = std::collections::BTreeMap::new();
        retired.insert("old".to_string(), "ff".repeat(16));
        Protection::new(&config::Protection {
            method: ProtectionMethod::Aes128,
            secret: "00".repeat(16),
            key_id: "2".into(),
            retired,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            key_prefix: String::new(),
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn keys_differ_by_asset_and_secret_and_unknown_secrets_have_none() {
        let p = protection(&[]);
        let a = p.current_key("films/a.mp4");
        assert_eq!(p.key("2", "films/a.mp4"), Some(a));
        assert_ne!(p.key("2", "films/b.mp4"), Some(a));
        assert_ne!(p.key("old", "films/a.mp4"), Some(a));
        assert!(p.key("old", "films/a.mp4").is_some());
        assert_eq!(p.key("3", "films/a.mp4"), None);
        // Derived as documented (checked against openssl in tests/cli).
        let mut mac = Hmac::<Sha256>::new_from_slice(&[0; 16]).unwrap();
        mac.update(b"casterpak aes-128 key|films/a.mp4");
        assert_eq!(a[..], mac.finalize().into_bytes()[..16]);
    }

    #[test]
    fn only_the_listed_paths_are_covered() {
        assert!(protection(&[]).covers("anything.mp4"));
        let p = protection(&["premium/", "films/paid_"]);
        assert!(p.covers("premium/a.mp4"));
        assert!(p.covers("films/paid_1.mp4"));
        assert!(!p.covers("films/free.mp4"));
    }
}
