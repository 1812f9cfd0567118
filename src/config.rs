//! Configuration shared by every subcommand: a TOML file, overridden by
//! `CASTERPAK_<SECTION>_<KEY>` environment variables, overridden by flags.
//!
//! The file is `--config FILE`, else `./casterpak.toml`, else
//! `/etc/casterpak/casterpak.toml`, else none (defaults). Unknown keys and
//! bad values are errors that name the key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub media: Media,
    pub server: Server,
    pub cache: Cache,
    pub remote: Remote,
    pub log: Log,
    pub tokens: Tokens,
    pub protection: Protection,
    pub preroll: Preroll,
    /// Backends by URL path prefix; `media.root` serves every path none of
    /// them claims.
    pub sources: Vec<Source>,
}

/// Signed URLs (see `src/tokens.rs` for the token's form).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tokens {
    /// The HMAC-SHA256 key tokens are signed with: hex (16 bytes at least),
    /// or the path of a file holding it in hex; empty for none.
    pub key: String,
    /// Query parameter that carries a token.
    pub param: String,
    /// Cookie that carries a token; empty: the name of `param`.
    pub cookie: String,
    /// Every media request needs a valid token. Keys (`[protection]`) need
    /// one whenever `key` is set, whatever this says.
    pub required: bool,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens {
            key: String::new(),
            param: "hdnea".into(),
            cookie: String::new(),
            required: false,
        }
    }
}

impl Tokens {
    /// The cookie's name.
    pub fn cookie_name(&self) -> &str {
        match self.cookie.as_str() {
            "" => &self.param,
            name => name,
        }
    }
}

/// Encrypted streams.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Protection {
    pub method: ProtectionMethod,
    /// What each stream's key is derived from: hex (16 bytes at least), or
    /// the path of a file holding it in hex.
    pub secret: String,
    /// The name of `secret` in key URLs (1 to 16 letters and digits): a new
    /// secret gets a new id, and playlists name the key of the secret
    /// they were made with.
    pub key_id: String,
    /// Secrets replaced by `secret`, by their ids: their keys are still
    /// answered, for players holding playlists made with them.
    pub retired: std::collections::BTreeMap<String, String>,
    /// Source path prefixes (as in URLs, after `server.prefix`) whose
    /// streams are protected; empty: every stream.
    pub paths: Vec<String>,
    /// Where AES-128 keys are answered: "" beside the media
    /// (`<server.prefix><path>/key_<ID>_<N>.key`); else a URL path prefix
    /// of their own (e.g. "/keys/": `/keys/<path>/key_<ID>_<N>.key`), which
    /// playlists then name, to route keys to a tier of their own.
    pub key_prefix: String,
}

impl Default for Protection {
    fn default() -> Self {
        Protection {
            method: ProtectionMethod::None,
            secret: String::new(),
            key_id: "1".into(),
            retired: Default::default(),
            paths: Vec::new(),
            key_prefix: String::new(),
        }
    }
}

/// A pre-roll before the content of HLS media playlists, chosen by the
/// viewer's country.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Preroll {
    /// The request header with the viewer's ISO 3166 alpha-2 country code,
    /// as a CDN or Varnish sets it (`CloudFront-Viewer-Country`,
    /// `CF-IPCountry`, `X-Country`).
    pub header: String,
    /// The pre-roll of countries not listed (a source path, as in URLs
    /// after `server.prefix`); empty: none for them.
    pub default: String,
    /// Pre-rolls by lower-case country code.
    pub countries: std::collections::BTreeMap<String, String>,
    /// Source path prefixes with no pre-roll (e.g. ["ads/", "trailers/"]).
    /// The pre-rolls' own paths never get one.
    pub off_paths: Vec<String>,
    /// Query parameter that turns the pre-roll off for a request when it
    /// is `0` (a signed URL can carry it).
    pub param: String,
    /// Whether `<param>=0` counts only when the request's token signs it
    /// (its `data` has `<param>=0`): viewers cannot skip the pre-roll by
    /// adding it to a URL.
    pub param_signed: bool,
    /// A MaxMind-format country database (`GeoLite2-Country.mmdb`): the
    /// country of a request without `header`, from the client's address.
    /// Empty: none.
    pub geoip_db: String,
    /// The header a trusted proxy gives the client's address in (the last
    /// address in it that is no trusted proxy itself is the client's).
    pub forwarded_for: String,
    /// Addresses and networks (`10.0.0.0/8`) whose `forwarded_for` header
    /// is believed; from any other peer it is ignored.
    pub trusted_proxies: Vec<String>,
}

impl Default for Preroll {
    fn default() -> Self {
        Preroll {
            header: "X-Country".into(),
            default: String::new(),
            countries: Default::default(),
            off_paths: Vec::new(),
            param: "preroll".into(),
            param_signed: false,
            geoip_db: String::new(),
            forwarded_for: "X-Forwarded-For".into(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl Preroll {
    /// Whether any pre-roll is configured.
    pub fn is_on(&self) -> bool {
        !self.default.is_empty() || !self.countries.is_empty()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProtectionMethod {
    /// Streams in the clear.
    #[default]
    None,
    /// HLS AES-128: whole MPEG-TS segments encrypted (AES-128-CBC, PKCS7),
    /// `EXT-X-KEY` in media playlists (RFC 8216 4.3.2.4); the CMAF form as
    /// `cbcs`, as with `sample-aes`.
    #[serde(rename = "aes-128")]
    Aes128,
    /// Sample encryption only: the CMAF form as `cbcs` (fMP4 HLS
    /// `SAMPLE-AES`, DASH), and no MPEG-TS form (MPEG-TS SAMPLE-AES is not
    /// made; its URLs answer 403).
    SampleAes,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// Lines of text, or one JSON object a line (for a log pipeline).
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Remote {
    /// A connection to a remote store must be made within this.
    pub connect_timeout: Duration,
    /// A remote store must start answering, and then send something, at
    /// least this often.
    pub timeout: Duration,
    /// A remote object's identity (length, ETag) is asked for again when it
    /// is older than this. While the store cannot answer, the last one
    /// known is used.
    pub revalidate: Duration,
    /// Copies into the input cache made at the same time.
    pub copies: usize,
}

impl Default for Remote {
    fn default() -> Self {
        Remote {
            connect_timeout: Duration(5),
            timeout: Duration(30),
            revalidate: Duration(60),
            copies: 4,
        }
    }
}

/// One `[[sources]]` entry.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// URL path prefix, after the server's prefix, ending with `/`.
    pub prefix: String,
    #[serde(rename = "type")]
    pub kind: SourceType,
    /// filesystem: the directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// http: the base URL that object paths are appended to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// s3: the endpoint URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// s3: `endpoint/bucket/key` rather than `bucket.endpoint/key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Copy objects into the input cache (default: true for http and s3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Source")
            .field("prefix", &self.prefix)
            .field("kind", &self.kind)
            .field("root", &self.root)
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    Filesystem,
    Http,
    S3,
}

impl Source {
    /// Whether its objects are copied into the input cache.
    pub fn copies(&self) -> bool {
        self.copy.unwrap_or(self.kind != SourceType::Filesystem)
    }

    /// s3: the credentials, from this entry or else the environment.
    pub fn credentials(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<crate::cache::remote::Credentials> {
        let from_env = || {
            Some((
                env("AWS_ACCESS_KEY_ID")?,
                env("AWS_SECRET_ACCESS_KEY")?,
                env("AWS_SESSION_TOKEN"),
            ))
        };
        let (access_key, secret_key, session_token) = match (&self.access_key, &self.secret_key) {
            (Some(a), Some(s)) => (a.clone(), s.clone(), None),
            (None, None) => from_env().ok_or_else(|| {
                anyhow::anyhow!(
                    "sources ({:?}): no credentials: set access_key and secret_key, \
                         or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                    self.prefix
                )
            })?,
            _ => bail!(
                "sources ({:?}): access_key and secret_key go together",
                self.prefix
            ),
        };
        Ok(crate::cache::remote::Credentials {
            access_key,
            secret_key,
            session_token,
        })
    }

    fn check(&self) -> anyhow::Result<()> {
        let at = format!("sources ({:?})", self.prefix);
        if self.prefix.is_empty() || self.prefix.starts_with('/') || !self.prefix.ends_with('/') {
            bail!("{at}: prefix must not start with '/' and must end with '/' (e.g. \"archive/\")");
        }
        let given = [
            ("root", self.root.is_some()),
            ("url", self.url.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("region", self.region.is_some()),
            ("bucket", self.bucket.is_some()),
            ("key_prefix", self.key_prefix.is_some()),
            ("path_style", self.path_style.is_some()),
            ("access_key", self.access_key.is_some()),
            ("secret_key", self.secret_key.is_some()),
        ];
        let (needed, allowed): (&[&str], &[&str]) = match self.kind {
            SourceType::Filesystem => (&["root"], &["root"]),
            SourceType::Http => (&["url"], &["url"]),
            SourceType::S3 => (
                &["endpoint", "bucket"],
                &[
                    "endpoint",
                    "region",
                    "bucket",
                    "key_prefix",
                    "path_style",
                    "access_key",
                    "secret_key",
                ],
            ),
        };
        let kind = format!("{:?}", self.kind).to_lowercase();
        for (key, present) in given {
            if present && !allowed.contains(&key) {
                bail!("{at}: {key} is not a setting of a {kind} source");
            }
            if !present && needed.contains(&key) {
                bail!("{at}: a {kind} source needs {key}");
            }
        }
        for url in [&self.url, &self.endpoint].into_iter().flatten() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("{at}: {url:?} is not an http:// or https:// URL");
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Media {
    /// Directory that URL paths and source paths are relative to.
    pub root: PathBuf,
    /// Target segment duration, seconds.
    pub segment_duration: f64,
    /// A source that failed to parse fails at once, with the same error,
    /// for this long (unless it changes); 0 to parse again every time.
    pub failure_ttl: Duration,
}

impl Default for Media {
    fn default() -> Self {
        Media {
            root: PathBuf::from("."),
            segment_duration: 6.0,
            failure_ttl: Duration(30),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address and port to listen on.
    pub listen: String,
    /// URL path prefix of the MSOD URLs (MPEG-TS).
    pub prefix: String,
    /// URL path prefix of the same paths as CMAF: fMP4 HLS and DASH.
    pub cmaf_prefix: String,
    /// When set, playlists use absolute URIs under this base
    /// (e.g. `https://cdn.example.com`); otherwise relative ones.
    pub base_url: String,
    /// Requests packaged or read from the cache at the same time (threads).
    pub workers: usize,
    /// Open connections at most; 0 sizes it from the file descriptor limit.
    pub max_connections: usize,
    /// `Cache-Control: max-age` of playlists and segments, seconds.
    pub max_age: u64,
    /// `Cache-Control: max-age` of error responses (4xx), seconds.
    pub error_max_age: u64,
    /// `Access-Control-Allow-Origin`; empty for no CORS headers.
    pub cors_origin: String,
    /// A response write that makes no progress for this long is abandoned
    /// (a stalled client).
    pub send_timeout: Duration,
    /// A request's whole header must arrive within this.
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub keepalive_timeout: Duration,
    /// A request waits this long at most for another request making the
    /// same object, then gets 503.
    pub wait_timeout: Duration,
    /// Where `/healthz` and `/metrics` are answered: "" on `listen`, beside
    /// the media; else an address of their own (e.g. a private one), and
    /// then only there.
    pub admin_listen: String,
    /// Segments made ahead of a player, in the background: after segment
    /// K the next ones, after a media playlist its first; the next one is
    /// also named in each answer's prefetch hints. 0 turns both off.
    pub prefetch: usize,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            prefix: "/i/".into(),
            cmaf_prefix: "/cmaf/".into(),
            base_url: String::new(),
            workers: 32,
            max_connections: 0,
            max_age: 86_400,
            error_max_age: 10,
            cors_origin: "*".into(),
            send_timeout: Duration(30),
            header_timeout: Duration(10),
            keepalive_timeout: Duration(60),
            wait_timeout: Duration(30),
            admin_listen: String::new(),
            prefetch: 1,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    /// Cache directory (created on first use).
    pub dir: PathBuf,
    /// Outputs not accessed for this long are removed by gc (`3d`, `12h`, seconds).
    pub output_ttl: Duration,
    /// Cached remote inputs not accessed for this long are removed by gc.
    pub input_ttl: Duration,
    /// Size cap of outputs (`20G`, `500M`, bytes); 0 for none.
    pub output_max_size: Size,
    /// Size cap of cached inputs; 0 for none.
    pub input_max_size: Size,
    /// `serve` runs gc this often; 0 to leave it to cron.
    pub gc_interval: Duration,
    /// fsync every cached object before it is renamed into place, so that
    /// even a power loss leaves no object with unwritten data. Costs about
    /// 10 ms per 4 MB segment on a virtual disk.
    pub fsync: bool,
    /// Free space to keep on the cache's filesystem: below it, gc runs
    /// early and deletes least recently used objects; 0 for none.
    pub min_free: Size,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            dir: default_cache_dir(),
            output_ttl: Duration(3 * 86_400),
            input_ttl: Duration(6 * 86_400),
            output_max_size: Size(0),
            input_max_size: Size(0),
            gc_interval: Duration(0),
            fsync: false,
            min_free: Size(0),
        }
    }
}

fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("casterpak");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/casterpak"),
        None => std::env::temp_dir().join("casterpak-cache"),
    }
}

/// Longest timeout a setting may have (a day): beyond, they are a mistake.
const MAX_TIMEOUT_SECONDS: u64 = 86_400;

/// A duration in seconds, written as a number of seconds or with a unit:
/// `90s`, `30m`, `12h`, `3d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "toml::Value", into = "toml::Value")]
pub struct Duration(pub u64);

impl Duration {
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

/// A size in bytes, written as a number or with a unit: `500K`, `20M`, `2G`, `1T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "toml::Value", into = "toml::Value")]
pub struct Size(pub u64);

fn with_unit(value: &toml::Value, units: &[(char, u64)], what: &str) -> Result<u64, String> {
    match value {
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        toml::Value::String(s) => {
            parse_with_unit(s, units).ok_or_else(|| format!("bad {what} {s:?}"))
        }
        other => Err(format!("bad {what} {other}")),
    }
}

pub fn parse_with_unit(s: &str, units: &[(char, u64)]) -> Option<u64> {
    let s = s.trim();
    let (digits, factor) = match s.chars().last()? {
        c if c.is_ascii_digit() => (s, 1),
        c => {
            let (_, factor) = units.iter().find(|(u, _)| u.eq_ignore_ascii_case(&c))?;
            (&s[..s.len() - c.len_utf8()], *factor)
        }
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(factor)
}

/// A duration given on the command line, in seconds (`90s`, `30m`,
/// `12h`, `3d`, or plain seconds).
pub fn parse_duration_arg(s: &str) -> Result<u64, String> {
    parse_with_unit(s, &DURATION_UNITS)
        .ok_or_else(|| format!("bad duration {s:?} (e.g. 90s, 30m, 12h, 3d)"))
}

pub const DURATION_UNITS: [(char, u64); 4] = [('s', 1), ('m', 60), ('h', 3_600), ('d', 86_400)];
const SIZE_UNITS: [(char, u64); 4] = [
    ('k', 1 << 10),
    ('m', 1 << 20),
    ('g', 1 << 30),
    ('t', 1 << 40),
];

impl TryFrom<toml::Value> for Duration {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Self, String> {
        with_unit(&v, &DURATION_UNITS, "duration").map(Duration)
    }
}

impl From<Duration> for toml::Value {
    fn from(d: Duration) -> toml::Value {
        toml::Value::Integer(d.0 as i64)
    }
}

impl TryFrom<toml::Value> for Size {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Self, String> {
        with_unit(&v, &SIZE_UNITS, "size").map(Size)
    }
}

impl From<Size> for toml::Value {
    fn from(s: Size) -> toml::Value {
        toml::Value::Integer(s.0 as i64)
    }
}

/// Keys a running server takes from a re-read configuration (SIGHUP):
/// read afresh for each request. The others need a restart.
const RELOADABLE: [&str; 5] = [
    "server.max_age",
    "server.error_max_age",
    "server.cors_origin",
    "server.wait_timeout",
    "server.prefetch",
];

impl Config {
    /// `new` applied onto this configuration where that is safe: the keys
    /// of [`RELOADABLE`] that changed are taken, and the others that
    /// changed are named, unapplied, as needing a restart. `server.prefetch`
    /// can change only while it stays above 0 (its thread starts with the
    /// server). Returns the result, the keys taken, and those left.
    pub fn reloaded(&self, new: &Config) -> (Config, Vec<String>, Vec<String>) {
        let now = toml::Table::try_from(self).expect("a configuration serializes");
        let next = toml::Table::try_from(new).expect("a configuration serializes");
        let mut applied = now.clone();
        let (mut taken, mut left) = (Vec::new(), Vec::new());
        for (section, value) in &next {
            let (Some(keys), Some(current)) = (value.as_table(), now[section].as_table()) else {
                // [[sources]]: whole, and only at start.
                if now.get(section) != Some(value) {
                    left.push(section.clone());
                }
                continue;
            };
            for (key, value) in keys {
                if current.get(key) == Some(value) {
                    continue;
                }
                let name = format!("{section}.{key}");
                let prefetch_toggled = name == "server.prefetch"
                    && (self.server.prefetch == 0) != (new.server.prefetch == 0);
                if RELOADABLE.contains(&name.as_str()) && !prefetch_toggled {
                    applied[section].as_table_mut().expect("a section")[key] = value.clone();
                    taken.push(name);
                } else {
                    left.push(name);
                }
            }
        }
        let applied = applied.try_into().expect("keys of a valid configuration");
        (applied, taken, left)
    }
}

/// Options every subcommand takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct CommonArgs {
    /// Configuration file (default: ./casterpak.toml, then /etc/casterpak/casterpak.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Media root directory (media.root).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Cache directory (cache.dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl Config {
    /// Loads the configuration: file, then environment, then `args`.
    pub fn load(args: &CommonArgs) -> anyhow::Result<Config> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let mut config = Self::load_from(args.config.as_deref(), &env)?;
        if let Some(root) = &args.root {
            config.media.root = root.clone();
        }
        if let Some(dir) = &args.cache_dir {
            config.cache.dir = dir.clone();
        }
        config.check()?;
        Ok(config)
    }

    fn load_from(file: Option<&Path>, env: &[(String, String)]) -> anyhow::Result<Config> {
        let path = match file {
            Some(p) => Some(p.to_owned()),
            None => ["casterpak.toml", "/etc/casterpak/casterpak.toml"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists()),
        };
        let config = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                // Straight from the file's text, so that an error points at
                // the right line of it.
                toml::from_str::<Config>(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {}", p.display(), e.to_string().trim_end()))?
            }
            None => Config::default(),
        };
        apply_env(config, env)
    }

    /// What gc keeps and deletes.
    pub fn gc_policy(&self) -> crate::cache::GcPolicy {
        crate::cache::GcPolicy {
            output_ttl_seconds: self.cache.output_ttl.0,
            input_ttl_seconds: self.cache.input_ttl.0,
            output_max_bytes: self.cache.output_max_size.0,
            input_max_bytes: self.cache.input_max_size.0,
            min_free_bytes: self.cache.min_free.0,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        let d = self.media.segment_duration;
        if !(0.1..=3600.0).contains(&d) {
            bail!("media.segment_duration: {d} is not between 0.1 and 3600 seconds");
        }
        for (key, prefix) in [
            ("prefix", &self.server.prefix),
            ("cmaf_prefix", &self.server.cmaf_prefix),
        ] {
            if !prefix.starts_with('/') || !prefix.ends_with('/') {
                bail!("server.{key}: {prefix:?} must start and end with '/'");
            }
        }
        if self.server.prefix.starts_with(&self.server.cmaf_prefix)
            || self.server.cmaf_prefix.starts_with(&self.server.prefix)
        {
            bail!(
                "server.prefix ({:?}) and server.cmaf_prefix ({:?}) must not contain each other",
                self.server.prefix,
                self.server.cmaf_prefix
            );
        }
        let mut prefixes = std::collections::HashSet::new();
        for source in &self.sources {
            source.check()?;
            if !prefixes.insert(&source.prefix) {
                bail!("sources: the prefix {:?} is given twice", source.prefix);
            }
            if source.kind == SourceType::S3 {
                source.credentials(&|name| std::env::var(name).ok())?;
            }
        }
        if self.remote.copies == 0 {
            bail!("remote.copies: must be at least 1");
        }
        for (key, value) in [
            ("connect_timeout", self.remote.connect_timeout),
            ("timeout", self.remote.timeout),
        ] {
            if !(1..=MAX_TIMEOUT_SECONDS).contains(&value.0) {
                bail!(
                    "remote.{key}: {} s is not between 1 s and {MAX_TIMEOUT_SECONDS} s",
                    value.0
                );
            }
        }
        if self.server.workers == 0 {
            bail!("server.workers: must be at least 1");
        }
        self.check_protection()?;
        self.check_preroll()?;
        if self.server.prefetch > MAX_PREFETCH {
            bail!(
                "server.prefetch: {} is more than {MAX_PREFETCH} segments ahead",
                self.server.prefetch
            );
        }
        let s = &self.server;
        for (key, value) in [
            ("send_timeout", s.send_timeout),
            ("header_timeout", s.header_timeout),
            ("keepalive_timeout", s.keepalive_timeout),
            ("wait_timeout", s.wait_timeout),
        ] {
            if !(1..=MAX_TIMEOUT_SECONDS).contains(&value.0) {
                bail!(
                    "server.{key}: {} s is not between 1 s and {MAX_TIMEOUT_SECONDS} s",
                    value.0
                );
            }
        }
        Ok(())
    }
}

impl Config {
    fn check_preroll(&self) -> anyhow::Result<()> {
        let p = &self.preroll;
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !token(&p.header) {
            bail!("preroll.header: {:?} is not a header name", p.header);
        }
        if !token(&p.forwarded_for) {
            bail!(
                "preroll.forwarded_for: {:?} is not a header name",
                p.forwarded_for
            );
        }
        for proxy in &p.trusted_proxies {
            if proxy.parse::<ipnetwork::IpNetwork>().is_err() {
                bail!("preroll.trusted_proxies: {proxy:?} is not an address or a network (10.0.0.0/8)");
            }
        }
        // (Read when `serve` starts: a bad database stops it there.)
        if !p.geoip_db.is_empty() && !Path::new(&p.geoip_db).is_file() {
            bail!("preroll.geoip_db: {} is no file", p.geoip_db);
        }
        if !token(&p.param) {
            bail!(
                "preroll.param: {:?} must be letters, digits, '_' or '-'",
                p.param
            );
        }
        for code in p.countries.keys() {
            if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_lowercase()) {
                bail!("preroll.countries: {code:?} is not a lower-case ISO 3166 alpha-2 code");
            }
        }
        for path in std::iter::once(&p.default).chain(p.countries.values()) {
            let bad = path.starts_with('/') || path.split('/').any(|c| c == ".." || c == ".");
            if bad {
                bail!("preroll: {path:?} must be a source path (no leading '/', no '..')");
            }
            if path.ends_with(".csmil") && crate::origin::preroll_rels(path).is_empty() {
                bail!("preroll: {path:?} is no csmil set of renditions (as in URLs)");
            }
        }
        Ok(())
    }

    fn check_protection(&self) -> anyhow::Result<()> {
        let t = &self.tokens;
        if t.key.is_empty() && t.required {
            bail!("tokens.required: needs tokens.key");
        }
        if !t.key.is_empty() {
            crate::tokens::read_key("tokens.key", &t.key)?;
        }
        for (key, name) in [("param", &t.param), ("cookie", &t.cookie)] {
            let ok = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok || (key == "param" && name.is_empty()) {
                bail!("tokens.{key}: {name:?} must be letters, digits, '_' or '-'");
            }
        }
        let p = &self.protection;
        let k = &p.key_prefix;
        if !k.is_empty()
            && (!k.starts_with('/')
                || !k.ends_with('/')
                || [&self.server.prefix, &self.server.cmaf_prefix]
                    .iter()
                    .any(|other| k.starts_with(other.as_str()) || other.starts_with(k.as_str())))
        {
            bail!(
                "protection.key_prefix: {k:?} must start and end with '/' and not contain, \
                 or lie in, server.prefix or server.cmaf_prefix"
            );
        }
        if p.method == ProtectionMethod::None {
            return Ok(());
        }
        if p.secret.is_empty() {
            bail!("protection.secret: needed when protection.method is not \"none\"");
        }
        crate::tokens::read_key("protection.secret", &p.secret)?;
        for id in std::iter::once(&p.key_id).chain(p.retired.keys()) {
            if !(1..=16).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                bail!("protection: the key id {id:?} must be 1 to 16 letters and digits");
            }
        }
        for (id, secret) in &p.retired {
            crate::tokens::read_key(&format!("protection.retired.{id}"), secret)?;
        }
        if p.retired.contains_key(&p.key_id) {
            bail!(
                "protection.retired: holds the current key_id {:?}",
                p.key_id
            );
        }
        Ok(())
    }
}

/// Segments a player may be got ahead of, at most (a minute of 6 s
/// segments): more would make ahead what a viewer who skips never plays.
pub const MAX_PREFETCH: usize = 10;

/// Applies `CASTERPAK_<SECTION>_<KEY>` variables to `config`. Values are
/// read as TOML values (numbers, booleans) when they parse as one, else as
/// strings. A variable naming no key, or with a bad value, is an error that
/// names the variable.
fn apply_env(config: Config, env: &[(String, String)]) -> anyhow::Result<Config> {
    let mut table = toml::Table::try_from(&config).expect("a configuration serializes");
    let mut config = config;
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("CASTERPAK_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        let found = table.iter().find_map(|(section, keys)| {
            let key = rest.strip_prefix(section.as_str())?.strip_prefix('_')?;
            keys.as_table()?
                .contains_key(key)
                .then(|| (section.clone(), key.to_string()))
        });
        let Some((section, key)) = found else {
            bail!("{name}: no configuration key {rest:?} (see README, Configuration)");
        };
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        table
            .get_mut(&section)
            .and_then(toml::Value::as_table_mut)
            .expect("found above")
            .insert(key.clone(), parsed);
        // One variable at a time, so that a bad value is blamed on its own.
        config = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| {
                anyhow::anyhow!("{name}={value:?}: {section}.{key}: {}", e.message())
            })?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The configuration README.md shows (its section's first block) is
    /// one, with every key.
    #[test]
    fn the_readme_example_is_a_valid_configuration() {
        let readme = include_str!("../README.md");
        let block = readme
            .split("\n## Configuration\n")
            .nth(1)
            .and_then(|section| section.split("```toml\n").nth(1))
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block in README.md");
        let config: Config = toml::from_str(block).expect("the README's configuration");
        config.check().unwrap();
        let shown: toml::Table = block.parse().unwrap();
        let all = toml::Table::try_from(Config::default()).unwrap();
        assert!(
            !config.sources.is_empty(),
            "README.md's configuration shows no [[sources]]"
        );
        for (section, keys) in &all {
            // `[[sources]]` is a list, checked above.
            let Some(keys) = keys.as_table() else {
                continue;
            };
            for key in keys.keys() {
                assert!(
                    shown[section].as_table().unwrap().contains_key(key),
                    "README.md's configuration lacks {section}.{key}"
                );
            }
        }
    }

    /// dist/casterpak.toml shows every key, commented out (`#key = ...`),
    /// with its default; uncommented, it is a valid configuration.
    #[test]
    fn the_sample_file_has_every_key_with_its_default() {
        let sample = include_str!("../dist/casterpak.toml");
        let uncommented: String = sample
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => {
                    rest
                }
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let config: Config = toml::from_str(&uncommented).expect("the sample, uncommented");
        assert_eq!(config.sources.len(), 3, "a source of each type");
        let shown: toml::Table = uncommented.parse().unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        for (section, keys) in &defaults {
            let Some(keys) = keys.as_table() else {
                continue;
            };
            for (key, default) in keys {
                let value = shown[section].as_table().unwrap().get(key);
                let value = value.unwrap_or_else(|| panic!("the sample lacks {section}.{key}"));
                // The cache directory's default depends on the machine.
                if (section.as_str(), key.as_str()) != ("cache", "dir") {
                    assert_eq!(value, default, "{section}.{key}: not its default");
                }
            }
            assert_eq!(
                shown[section].as_table().unwrap().len(),
                keys.len(),
                "[{section}]: a key the code does not have"
            );
        }
        // Every key a source may have, in one of the examples.
        let source_keys: std::collections::BTreeSet<&str> = shown["sources"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s.as_table().unwrap().keys().map(String::as_str))
            .collect();
        let every = Source {
            prefix: String::new(),
            kind: SourceType::S3,
            root: Some(PathBuf::new()),
            url: Some(String::new()),
            endpoint: Some(String::new()),
            region: Some(String::new()),
            bucket: Some(String::new()),
            key_prefix: Some(String::new()),
            path_style: Some(true),
            copy: Some(true),
            access_key: Some(String::new()),
            secret_key: Some(String::new()),
        };
        for key in toml::Table::try_from(every).unwrap().keys() {
            assert!(
                source_keys.contains(key.as_str()),
                "no example has sources.{key}"
            );
        }
    }

    #[test]
    fn a_reload_takes_the_safe_keys_and_names_the_others() {
        let now = Config::default();
        let mut new = Config::default();
        new.server.max_age = 60;
        new.server.cors_origin = "https://player.example.com".into();
        new.server.prefetch = 3;
        new.server.workers = 4;
        new.media.segment_duration = 4.0;
        new.cache.output_ttl = Duration(3600);
        let (applied, taken, left) = now.reloaded(&new);
        assert_eq!(
            taken,
            ["server.cors_origin", "server.max_age", "server.prefetch"]
        );
        assert_eq!(
            left,
            [
                "cache.output_ttl",
                "media.segment_duration",
                "server.workers"
            ]
        );
        assert_eq!(applied.server.max_age, 60);
        assert_eq!(applied.server.prefetch, 3);
        assert_eq!(applied.server.cors_origin, "https://player.example.com");
        assert_eq!(applied.server.workers, now.server.workers);
        assert_eq!(applied.media.segment_duration, 6.0);
        assert_eq!(applied.cache.output_ttl, now.cache.output_ttl);
        // Prefetch off, or on again, takes a restart (its thread).
        new = Config::default();
        new.server.prefetch = 0;
        let (applied, taken, left) = now.reloaded(&new);
        assert!(taken.is_empty());
        assert_eq!(left, ["server.prefetch"]);
        assert_eq!(applied.server.prefetch, 1);
        // Sources: whole, at start only.
        new = Config::default();
        new.sources.push(Source {
            prefix: "nas/".into(),
            kind: SourceType::Filesystem,
            root: Some("/mnt".into()),
            url: None,
            endpoint: None,
            region: None,
            bucket: None,
            key_prefix: None,
            path_style: None,
            copy: None,
            access_key: None,
            secret_key: None,
        });
        let (applied, _, left) = now.reloaded(&new);
        assert_eq!(left, ["sources"]);
        assert!(applied.sources.is_empty());
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"0.0.0.0:9000\"\nworkers = 4\n[cache]\noutput_ttl = \"2d\"\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&file), &env(&[("CASTERPAK_SERVER_WORKERS", "8")])).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9000");
        assert_eq!(c.server.workers, 8);
        assert_eq!(c.cache.output_ttl, Duration(2 * 86_400));
        assert_eq!(c.media.segment_duration, 6.0);
    }

    #[test]
    fn environment_strings_and_units() {
        let c = Config::load_from(
            None,
            &env(&[
                ("CASTERPAK_MEDIA_ROOT", "/srv/media"),
                ("CASTERPAK_CACHE_OUTPUT_MAX_SIZE", "20G"),
            ]),
        )
        .unwrap();
        assert_eq!(c.media.root, PathBuf::from("/srv/media"));
        assert_eq!(c.cache.output_max_size, Size(20 << 30));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[server]\nlisen = \"x\"\n").unwrap();
        let err = Config::load_from(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = Config::load_from(None, &env(&[("CASTERPAK_SERVER_LISEN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("CASTERPAK_SERVER_LISEN"), "{err}");
        let err = Config::load_from(None, &env(&[("CASTERPAK_CACHE_OUTPUT_TTL", "3 weeks")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad duration"), "{err}");
        let err = Config::load_from(None, &env(&[("CASTERPAK_SERVER_WORKERS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("workers"), "{err}");
    }
}
