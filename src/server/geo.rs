//! The viewer's country, for pre-rolls: from the header a CDN or Varnish
//! sets (`preroll.header`), else from the client's address in a
//! MaxMind-format country database (`preroll.geoip_db`). Behind trusted
//! proxies (`preroll.trusted_proxies`) the client's address is the last one
//! in their `preroll.forwarded_for` header that is no trusted proxy.

use std::net::IpAddr;

use anyhow::Context;
use http::HeaderMap;
use ipnetwork::IpNetwork;
use maxminddb::{path, Reader};

use crate::config::Preroll;
use crate::origin::Viewer;

/// Addresses read from a forwarded-for header, at most (a header a client
/// wrote can list any number).
const MAX_FORWARDED: usize = 32;

/// Where the viewer's country comes from.
pub struct Geo {
    header: String,
    database: Option<Database>,
}

struct Database {
    reader: Reader<Vec<u8>>,
    forwarded_for: String,
    trusted: Vec<IpNetwork>,
}

/// A viewer, and whether their country came from their address (then no
/// shared cache may keep what was chosen by it).
pub struct Located {
    pub viewer: Viewer,
    pub by_address: bool,
}

impl Geo {
    /// As `[preroll]` says; reads the database, when there is one.
    pub fn open(config: &Preroll) -> anyhow::Result<Geo> {
        let database = match config.geoip_db.as_str() {
            "" => None,
            file => {
                let reader = Reader::open_readfile(file)
                    .with_context(|| format!("preroll.geoip_db: {file}"))?;
                let trusted = config
                    .trusted_proxies
                    .iter()
                    .map(|p| p.parse().context("preroll.trusted_proxies"))
                    .collect::<anyhow::Result<Vec<IpNetwork>>>()?;
                Some(Database {
                    reader,
                    forwarded_for: config.forwarded_for.clone(),
                    trusted,
                })
            }
        };
        Ok(Geo {
            header: config.header.clone(),
            database,
        })
    }

    /// The viewer of a request from `peer` with `headers`.
    pub fn locate(&self, peer: IpAddr, headers: &HeaderMap) -> Located {
        let header = headers
            .get(self.header.as_str())
            .and_then(|v| v.to_str().ok());
        if let Some(code) = header {
            return Located {
                viewer: Viewer::in_country(code),
                by_address: false,
            };
        }
        let Some(db) = &self.database else {
            return Located {
                viewer: Viewer::default(),
                by_address: false,
            };
        };
        let client = db.client(peer, headers);
        let country = match db.country(client) {
            Ok(country) => country,
            Err(e) => {
                tracing::debug!("{client}: no country: {e}");
                None
            }
        };
        Located {
            viewer: country.map(|c| Viewer::in_country(&c)).unwrap_or_default(),
            by_address: true,
        }
    }
}

impl Database {
    /// The client's address: `peer`, or behind trusted proxies the last
    /// address they were given that is not one of them.
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = unmapped(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all(self.forwarded_for.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .take(MAX_FORWARDED)
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .map(unmapped)
            .collect();
        forwarded
            .into_iter()
            .rev()
            .find(|a| !self.is_trusted(*a))
            .unwrap_or(peer)
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(address))
    }

    /// The ISO 3166 alpha-2 code the database gives `address`, if any.
    fn country(&self, address: IpAddr) -> anyhow::Result<Option<String>> {
        let found = self.reader.lookup(address)?;
        let code: Option<&str> = found.decode_path(&path!["country", "iso_code"])?;
        Ok(code.map(str::to_string))
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`, as a dual-stack
/// socket reports IPv4 peers) as the IPv4 address it is.
fn unmapped(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(trusted: &[&str]) -> Geo {
        let config = Preroll {
            geoip_db: concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/geoip/country.mmdb"
            )
            .to_string(),
            trusted_proxies: trusted.iter().map(|t| t.to_string()).collect(),
            ..Preroll::default()
        };
        Geo::open(&config).unwrap()
    }

    fn country(geo: &Geo, peer: &str, headers: &[(&str, &str)]) -> (Option<String>, bool) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let located = geo.locate(peer.parse().unwrap(), &map);
        (located.viewer.country, located.by_address)
    }

    #[test]
    fn the_country_comes_from_the_header_else_the_clients_address() {
        let geo = geo(&["10.0.0.0/8", "::1"]);
        let gb = Some("gb".to_string());
        assert_eq!(country(&geo, "192.0.2.7", &[]), (gb.clone(), true));
        assert_eq!(
            country(&geo, "::ffff:198.51.100.1", &[]).0.as_deref(),
            Some("de")
        );
        assert_eq!(country(&geo, "2001:db8:1::5", &[]), (gb.clone(), true));
        assert_eq!(country(&geo, "8.8.8.8", &[]), (None, true));
        // The CDN's header first.
        assert_eq!(
            country(&geo, "192.0.2.7", &[("X-Country", "FR")]),
            (Some("fr".to_string()), false)
        );
        // A trusted proxy's forwarded-for: the last address that is no
        // proxy; anyone else's is ignored.
        let forwarded = [("X-Forwarded-For", "203.0.113.9, 192.0.2.1, 10.1.2.3")];
        assert_eq!(country(&geo, "10.9.9.9", &forwarded), (gb.clone(), true));
        assert_eq!(country(&geo, "::1", &forwarded), (gb, true));
        assert_eq!(
            country(&geo, "198.51.100.1", &forwarded).0.as_deref(),
            Some("de")
        );
        let junk = [("X-Forwarded-For", "junk, 10.0.0.1")];
        assert_eq!(country(&geo, "10.9.9.9", &junk), (None, true));
    }

    #[test]
    fn without_a_database_only_the_header_tells() {
        let geo = Geo::open(&Preroll::default()).unwrap();
        assert_eq!(country(&geo, "192.0.2.7", &[]), (None, false));
        assert_eq!(
            country(&geo, "192.0.2.7", &[("X-Country", "de")])
                .0
                .as_deref(),
            Some("de")
        );
    }
}
