//! Signed URLs: tokens in the style of Akamai's token authorization
//! (`hdnea`/`hdntl`, EdgeAuth 2.0 fields), so that MSOD deployments keep
//! the tokens their web applications already mint.
//!
//! A token is `~`-separated `name=value` fields, in this order, the last
//! one the signature:
//!
//! ```text
//! [ip=ADDR~][st=START~]exp=EXPIRY~acl=PATTERN[!PATTERN...][~data=DATA]~hmac=HEX
//! ```
//!
//! `hmac` is HMAC-SHA256 (RFC 2104, FIPS 180-4), keyed with `tokens.key`,
//! of everything before `~hmac=`, in lowercase hex. `st` and `exp` are Unix
//! seconds; a token is good from `st` (when given) until before `exp`.
//! `acl` lists URL path patterns, `!`-separated, where `*` stands for any
//! run of characters (`/` included); the request's path must match one.
//! `ip`, when given, must be the client's address. `data` is signed and
//! otherwise free: `&`-separated `name=value` pairs that the request's
//! query may only use when the token says so (`preroll.param_signed`:
//! `data=preroll=0` lets `?preroll=0` turn the pre-roll off).

use std::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted, in bytes: a token is parsed and its HMAC
/// computed before anything else is done for a request.
pub const MAX_TOKEN_BYTES: usize = 2048;
/// Most patterns in an `acl`.
const MAX_ACL_PATTERNS: usize = 16;

/// Why a request's token was not accepted (each answered 403).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    /// The signature does not match: altered, or signed with another key.
    Tampered,
    Expired,
    NotYetValid,
    /// Good, for other paths.
    OtherPath,
    /// Good, for another client address.
    OtherClient,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Missing => "a token is required",
            Refusal::Malformed => "the token is malformed",
            Refusal::Tampered => "the token's signature does not match",
            Refusal::Expired => "the token has expired",
            Refusal::NotYetValid => "the token is not valid yet",
            Refusal::OtherPath => "the token is for other paths",
            Refusal::OtherClient => "the token is for another client",
        })
    }
}

/// What a token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Client address it is bound to.
    pub ip: Option<IpAddr>,
    /// Valid from (Unix seconds), when given.
    pub start: Option<u64>,
    /// Valid until before (Unix seconds).
    pub expiry: u64,
    /// Path patterns, `*` a wildcard.
    pub acl: Vec<String>,
    /// Signed free text (`&`-separated `name=value` pairs), without `~`.
    pub data: Option<String>,
}

impl Grant {
    /// Whether `data` has the pair `pair` (`name=value`).
    pub fn signs(&self, pair: &str) -> bool {
        self.data
            .as_deref()
            .is_some_and(|data| data.split('&').any(|p| p == pair))
    }
}

/// Mints and checks tokens with one key.
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    pub fn new(key: Vec<u8>) -> Signer {
        Signer { key }
    }

    /// The token for `grant`.
    pub fn mint(&self, grant: &Grant) -> String {
        let mut fields = Vec::new();
        if let Some(ip) = grant.ip {
            fields.push(format!("ip={ip}"));
        }
        if let Some(start) = grant.start {
            fields.push(format!("st={start}"));
        }
        fields.push(format!("exp={}", grant.expiry));
        fields.push(format!("acl={}", grant.acl.join("!")));
        if let Some(data) = &grant.data {
            fields.push(format!("data={data}"));
        }
        let signed = fields.join("~");
        let hmac = crate::cache::hex(&self.mac(&signed).finalize().into_bytes());
        format!("{signed}~hmac={hmac}")
    }

    /// Whether `token` lets `client` have `path` at `now` (Unix seconds).
    pub fn check(
        &self,
        token: &str,
        path: &str,
        client: IpAddr,
        now: u64,
    ) -> Result<Grant, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::Malformed);
        }
        let (signed, hmac) = token.rsplit_once("~hmac=").ok_or(Refusal::Malformed)?;
        let hmac = unhex(hmac).ok_or(Refusal::Malformed)?;
        // Constant time: how much of a forged signature matches says
        // nothing.
        self.mac(signed)
            .verify_slice(&hmac)
            .map_err(|_| Refusal::Tampered)?;
        let grant = parse(signed).ok_or(Refusal::Malformed)?;
        if now >= grant.expiry {
            return Err(Refusal::Expired);
        }
        if grant.start.is_some_and(|start| now < start) {
            return Err(Refusal::NotYetValid);
        }
        if !grant.acl.iter().any(|pattern| matches(pattern, path)) {
            return Err(Refusal::OtherPath);
        }
        if grant.ip.is_some_and(|ip| !same_client(ip, client)) {
            return Err(Refusal::OtherClient);
        }
        Ok(grant)
    }

    fn mac(&self, signed: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(signed.as_bytes());
        mac
    }
}

/// The fields of a token's signed part, in their order; `None` when one is
/// missing, repeated, out of order, unknown or bad.
fn parse(signed: &str) -> Option<Grant> {
    let mut fields = signed.split('~').peekable();
    let mut take = |name: &str| {
        let value = fields.peek()?.strip_prefix(name)?.strip_prefix('=')?;
        fields.next();
        Some(value)
    };
    let ip = take("ip").map(str::parse).transpose().ok()?;
    let start = take("st").map(str::parse).transpose().ok()?;
    let expiry = take("exp")?.parse().ok()?;
    let acl: Vec<String> = take("acl")?.split('!').map(str::to_string).collect();
    let data = take("data").map(str::to_string);
    if fields.next().is_some()
        || acl.len() > MAX_ACL_PATTERNS
        || acl.iter().any(|p| !p.starts_with('/'))
    {
        return None;
    }
    Some(Grant {
        ip,
        start,
        expiry,
        acl,
        data,
    })
}

/// Whether `path` matches `pattern`, where `*` stands for any run of
/// characters. Linear in their lengths (no backtracking blow-up).
fn matches(pattern: &str, path: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().expect("split yields one at least");
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole path.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// An IPv4 client may reach an IPv6 socket as `::ffff:a.b.c.d`.
fn same_client(bound: IpAddr, client: IpAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    canonical(bound) == canonical(client)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// A key given as hex, or as the path of a file holding it in hex: the
/// bytes, or what is wrong (naming `what`, a configuration key).
pub fn read_key(what: &str, value: &str) -> anyhow::Result<Vec<u8>> {
    let text = match unhex(value.trim()) {
        Some(key) => return check_key(what, key),
        None => std::fs::read_to_string(value).map_err(|e| {
            anyhow::anyhow!("{what}: neither hex nor a readable file ({value}): {e}")
        })?,
    };
    let key = unhex(text.trim())
        .ok_or_else(|| anyhow::anyhow!("{what}: the file {value} does not hold a key in hex"))?;
    check_key(what, key)
}

fn check_key(what: &str, key: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    if key.len() < 16 {
        anyhow::bail!(
            "{what}: {} bytes is too short a key (16 at least)",
            key.len()
        );
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn signer() -> Signer {
        Signer::new(b"0123456789abcdef".to_vec())
    }

    fn grant(acl: &str) -> Grant {
        Grant {
            ip: None,
            start: None,
            expiry: NOW + 60,
            acl: acl.split('!').map(str::to_string).collect(),
            data: None,
        }
    }

    fn local() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[test]
    fn a_minted_token_reads_as_documented_and_is_accepted() {
        let token = signer().mint(&grant("/i/films/*"));
        let (signed, hmac) = token.split_once("~hmac=").unwrap();
        assert_eq!(signed, format!("exp={}~acl=/i/films/*", NOW + 60));
        assert_eq!(hmac.len(), 64);
        let checked = signer().check(&token, "/i/films/a.mp4/master.m3u8", local(), NOW);
        assert_eq!(checked, Ok(grant("/i/films/*")));
    }

    #[test]
    fn every_bad_token_is_refused_for_its_reason() {
        let s = signer();
        let path = "/i/films/a.mp4/index_0_av.m3u8";
        let check = |token: &str| s.check(token, path, local(), NOW);
        let good = s.mint(&grant("/i/films/*"));
        assert!(check(&good).is_ok());
        let expired = s.mint(&Grant {
            expiry: NOW,
            ..grant("/i/*")
        });
        assert_eq!(check(&expired), Err(Refusal::Expired));
        let later = s.mint(&Grant {
            start: Some(NOW + 1),
            ..grant("/i/*")
        });
        assert_eq!(check(&later), Err(Refusal::NotYetValid));
        assert_eq!(
            check(&s.mint(&grant("/i/other/*"))),
            Err(Refusal::OtherPath)
        );
        let elsewhere = s.mint(&Grant {
            ip: Some("10.0.0.1".parse().unwrap()),
            ..grant("/i/*")
        });
        assert_eq!(check(&elsewhere), Err(Refusal::OtherClient));
        // Any byte changed: the path widened, a later expiry, the HMAC.
        let widened = good.replace("acl=/i/films/*", "acl=/*");
        assert_eq!(check(&widened), Err(Refusal::Tampered));
        let extended = good.replace(&format!("exp={}", NOW + 60), &format!("exp={}", NOW + 99));
        assert_eq!(check(&extended), Err(Refusal::Tampered));
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            check(&String::from_utf8(flipped).unwrap()),
            Err(Refusal::Tampered)
        );
        let other_key = Signer::new(b"another key 16 b".to_vec()).mint(&grant("/i/*"));
        assert_eq!(check(&other_key), Err(Refusal::Tampered));
        for malformed in [
            "",
            "exp=1",
            "hmac=00",
            "exp=1~acl=/x~hmac=zz",
            &"a".repeat(3000),
        ] {
            assert_eq!(check(malformed), Err(Refusal::Malformed), "{malformed}");
        }
    }

    #[test]
    fn signed_fields_out_of_order_or_unknown_are_malformed() {
        let s = signer();
        let sign = |signed: &str| {
            let hmac = crate::cache::hex(&s.mac(signed).finalize().into_bytes());
            s.check(&format!("{signed}~hmac={hmac}"), "/a", local(), NOW)
        };
        let exp = NOW + 60;
        assert!(sign(&format!("exp={exp}~acl=/a")).is_ok());
        for bad in [
            format!("acl=/a~exp={exp}"),
            format!("exp={exp}~acl=/a~id=1"),
            format!("exp={exp}~acl=a"),
            "exp=x~acl=/a".to_string(),
            format!("ip=nope~exp={exp}~acl=/a"),
        ] {
            assert_eq!(sign(&bad), Err(Refusal::Malformed), "{bad}");
        }
    }

    #[test]
    fn acl_wildcards_match_any_run_and_lists_any_pattern() {
        for (pattern, path, expected) in [
            ("/i/films/*", "/i/films/a.mp4/master.m3u8", true),
            ("/i/films/*", "/i/film/a.mp4", false),
            ("/i/*/a.mp4/*", "/i/x/y/a.mp4/index_0_av.m3u8", true),
            ("/i/*.m3u8", "/i/films/a.mp4/segment1_0_av.ts", false),
            ("/exact", "/exact", true),
            ("/exact", "/exact/more", false),
            ("/a*b*c", "/abc", true),
            ("/a*b*c", "/acb", false),
            ("/*", "/anything/at/all", true),
        ] {
            assert_eq!(matches(pattern, path), expected, "{pattern} {path}");
        }
        let s = signer();
        let token = s.mint(&grant("/i/a/*!/i/b/*"));
        assert!(s.check(&token, "/i/b/x.mp4", local(), NOW).is_ok());
        // Many stars against a long path take no time to refuse.
        let pattern = format!("/{}x", "*a".repeat(500));
        assert!(!matches(&pattern, &format!("/{}", "a".repeat(1500))));
    }

    #[test]
    fn signed_data_is_read_back_and_cannot_be_changed() {
        let s = signer();
        let token = s.mint(&Grant {
            data: Some("preroll=0&x=1".into()),
            ..grant("/i/*")
        });
        let (signed, _) = token.split_once("~hmac=").unwrap();
        assert!(signed.ends_with("~acl=/i/*~data=preroll=0&x=1"), "{signed}");
        let checked = s.check(&token, "/i/a.mp4", local(), NOW).unwrap();
        assert!(checked.signs("preroll=0") && checked.signs("x=1"));
        assert!(!checked.signs("preroll=1") && !checked.signs("preroll"));
        assert!(!grant("/i/*").signs("preroll=0"));
        // Added or changed after signing: refused.
        let changed = token.replace("data=preroll=0", "data=preroll=1");
        assert_eq!(
            s.check(&changed, "/i/a.mp4", local(), NOW),
            Err(Refusal::Tampered)
        );
        let unsigned = s.mint(&grant("/i/*"));
        let added = unsigned.replace("~hmac=", "~data=preroll=0~hmac=");
        assert_eq!(
            s.check(&added, "/i/a.mp4", local(), NOW),
            Err(Refusal::Tampered)
        );
    }

    #[test]
    fn an_ipv4_client_matches_on_an_ipv6_socket() {
        let s = signer();
        let token = s.mint(&Grant {
            ip: Some(local()),
            ..grant("/*")
        });
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(s.check(&token, "/x", mapped, NOW).is_ok());
    }

    #[test]
    fn keys_are_read_as_hex_or_from_a_file_and_must_be_long_enough() {
        let hex = "00112233445566778899aabbccddeeff";
        assert_eq!(read_key("tokens.key", hex).unwrap().len(), 16);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, format!("{hex}\n")).unwrap();
        assert_eq!(
            read_key("tokens.key", file.to_str().unwrap())
                .unwrap()
                .len(),
            16
        );
        let short = read_key("tokens.key", "0011").unwrap_err().to_string();
        assert!(short.contains("too short"), "{short}");
        let missing = read_key("tokens.key", "/no/such/file")
            .unwrap_err()
            .to_string();
        assert!(missing.starts_with("tokens.key: neither hex"), "{missing}");
    }
}
