//! Application API keys: made from the operating system's random source,
//! shown once, stored in the config only as their SHA-256 hash; a presented
//! key is hashed and its digest looked up (see the Connector's snapshot for
//! why indexing digests is safe).

use sha2::{Digest, Sha256};

/// The prefix of every key hfconnect makes.
pub(crate) const KEY_PREFIX: &str = "hfc_";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh application key and the hash the config holds (`sha256:…`).
pub fn new_key() -> Result<(String, String), String> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| format!("the operating system's random source failed: {e}"))?;
    let key = format!("{KEY_PREFIX}{}", hex(&raw));
    let hash = key_hash(&key);
    Ok((key, hash))
}

/// What the config holds for `key`: `sha256:` and the hex of its SHA-256.
pub fn key_hash(key: &str) -> String {
    format!("sha256:{}", hex(&hash(key)))
}

/// The SHA-256 of a key.
pub(crate) fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Read `sha256:<64 hex digits>`.
pub(crate) fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let h = s.strip_prefix("sha256:")?;
    if h.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_keys_verify_against_their_hash_only() {
        let (key, line) = new_key().unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == 4 + 64);
        let h = parse_hash(&line).unwrap();
        assert_eq!(hash(&key), h);
        assert_ne!(hash(&format!("{key}x")), h);
        let (other, _) = new_key().unwrap();
        assert_ne!(key, other);
        assert!(parse_hash("sha256:zz").is_none() && parse_hash("md5:00").is_none());
    }
}
