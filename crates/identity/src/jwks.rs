//! An identity provider's keys from a JWKS file, by `kid`, read again when
//! the file changes: a provider rotates its keys by publishing a new set,
//! and whatever syncs that file here (a sidecar, a cron job) needs no
//! restart of the gateways.
//!
//! A file that no longer parses keeps the keys last read (logged): a bad
//! rotation must not lock every buyer out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::ConfigError;
use crate::verifier::{jwk_algorithm, SharedKey};

/// How often the file's modification time is looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct JwksFile {
    path: PathBuf,
    loaded: RwLock<Loaded>,
}

struct Loaded {
    keys: HashMap<String, (SharedKey, Algorithm)>,
    /// The file's modification time and length when it was read.
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

impl JwksFile {
    /// Reads the file; at start it must hold at least one usable key.
    pub(crate) fn open(path: &Path) -> Result<Self, ConfigError> {
        let stamp = stamp(path);
        let keys = read_keys(path)?;
        if keys.is_empty() {
            return Err(ConfigError::BadKey {
                path: path.into(),
                reason: "no usable key (each needs a kid and an RS256, ES256 or HS256 key)".into(),
            });
        }
        Ok(Self {
            path: path.into(),
            loaded: RwLock::new(Loaded {
                keys,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    pub(crate) fn key(&self, kid: &str) -> Option<(SharedKey, Algorithm)> {
        self.reload_if_changed();
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        loaded.keys.get(kid).cloned()
    }

    fn reload_if_changed(&self) {
        {
            let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            if loaded.checked.elapsed() < CHECK_EVERY {
                return;
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        if loaded.checked.elapsed() < CHECK_EVERY {
            return; // another request looked meanwhile
        }
        loaded.checked = Instant::now();
        let now = stamp(&self.path);
        if now == loaded.stamp {
            return;
        }
        match read_keys(&self.path) {
            Ok(keys) if !keys.is_empty() => {
                tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS file read again");
                loaded.keys = keys;
                loaded.stamp = now;
            }
            Ok(_) => {
                tracing::warn!(path = %self.path.display(), "JWKS file has no usable key; keeping the keys read before");
            }
            Err(err) => {
                tracing::warn!(%err, "JWKS file unreadable; keeping the keys read before");
            }
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Every key of the set with a `kid` and an algorithm dropline verifies;
/// others are skipped with a warning.
fn read_keys(path: &Path) -> Result<HashMap<String, (SharedKey, Algorithm)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|err| ConfigError::BadKey {
        path: path.into(),
        reason: format!("not a JWKS document: {err}"),
    })?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        let algorithm = jwk_algorithm(jwk)
            .filter(|alg| matches!(alg, Algorithm::RS256 | Algorithm::ES256 | Algorithm::HS256));
        let key = DecodingKey::from_jwk(jwk);
        match (kid, algorithm, key) {
            (Some(kid), Some(algorithm), Ok(key)) => {
                keys.insert(kid, (Arc::new(key), algorithm));
            }
            (kid, _, _) => {
                tracing::warn!(path = %path.display(), ?kid, "JWKS key skipped: no kid, or not an RS256, ES256 or HS256 key");
            }
        }
    }
    Ok(keys)
}
