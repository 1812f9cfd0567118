//! Playlists whose bytes depend on more of the URL than the sources it
//! names, kept in memory only. A csmil URL can list its renditions in any
//! order, repeat them or name missing ones, and each such URL is a master
//! of its own; with `server.base_url` set, even a media playlist carries
//! the whole URL in its URIs. Kept on disk, anonymous clients could fill
//! the cache with them. They are quick to make again from the parsed
//! sources (in memory, or their indexes in the cache), so they are not
//! stored. Media playlists that are stored are also kept here, in front of
//! the cache: a player asks for them again and again, and from memory a
//! hit costs no database lookup and no file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Playlists kept: at most this many ...
const MAX_PLAYLISTS: usize = 4096;
/// ... and this many bytes between them.
const MAX_BYTES: usize = 16 << 20;

#[derive(Default)]
pub(super) struct InMemory {
    inner: Mutex<Inner>,
}

/// A playlist kept, and its ETag (a hash of its key, worked out once).
#[derive(Clone)]
pub(super) struct Kept {
    pub bytes: Arc<Vec<u8>>,
    pub etag: String,
}

#[derive(Default)]
struct Inner {
    /// Key -> what is kept, and the tick of its last use.
    map: HashMap<String, (Kept, u64)>,
    bytes: usize,
    tick: u64,
}

impl InMemory {
    pub fn get(&self, key: &str) -> Option<Kept> {
        let mut inner = self.inner.lock().expect("masters lock");
        inner.tick += 1;
        let tick = inner.tick;
        let (kept, used) = inner.map.get_mut(key)?;
        *used = tick;
        Some(kept.clone())
    }

    /// Keeps `bytes` as the playlist of `key`, the least recently used out
    /// first when full; its ETag.
    pub fn insert(&self, key: String, bytes: Arc<Vec<u8>>) -> String {
        let etag = crate::cache::etag_of(&key);
        let mut inner = self.inner.lock().expect("masters lock");
        while !inner.map.is_empty()
            && (inner.map.len() >= MAX_PLAYLISTS || inner.bytes + bytes.len() > MAX_BYTES)
        {
            let oldest = inner
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
                .expect("not empty");
            if let Some((old, _)) = inner.map.remove(&oldest) {
                inner.bytes -= old.bytes.len();
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.bytes += bytes.len();
        let kept = Kept {
            bytes,
            etag: etag.clone(),
        };
        if let Some((old, _)) = inner.map.insert(key, (kept, tick)) {
            inner.bytes -= old.bytes.len();
        }
        etag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_first_when_full() {
        let kept = InMemory::default();
        for n in 0..MAX_PLAYLISTS {
            kept.insert(n.to_string(), Arc::new(vec![0; 10]));
        }
        // Use the first; the second is now the least recently used.
        assert!(kept.get("0").is_some());
        kept.insert("new".into(), Arc::new(vec![0; 10]));
        assert!(kept.get("0").is_some() && kept.get("new").is_some());
        assert!(kept.get("1").is_none());
        let inner = kept.inner.lock().unwrap();
        assert_eq!(inner.map.len(), MAX_PLAYLISTS);
        assert_eq!(inner.bytes, MAX_PLAYLISTS * 10);
    }
}
