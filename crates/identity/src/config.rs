//! How buyers' tokens are checked, as configured: which key, which issuer
//! and audience. Resolved into a [`crate::Verifier`] once, at start.

use std::path::PathBuf;

/// Where the keys come from; exactly one must be set.
#[derive(Debug, Clone, Default)]
pub struct KeyConfig {
    /// HS256 with this shared secret (at least 32 bytes).
    pub secret: Option<String>,
    /// A public key in PEM: RS256 for an RSA key, ES256 for a P-256 key.
    pub public_key_pem: Option<PathBuf>,
    /// A JWKS file (`{"keys": [...]}`); a token's `kid` picks the key. The
    /// file is read again when it changes (checked at most once a second).
    pub jwks_file: Option<PathBuf>,
    /// When set, a token's `iss` must be this.
    pub issuer: Option<String>,
    /// When set, a token's `aud` must contain this.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
}

/// The shortest shared secret taken: HS256's key should be as long as its
/// hash (RFC 7518 §3.2).
pub const SECRET_BYTES_MIN: usize = 32;

/// Why the configured keys cannot be used; the process refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no key configured for buyers' tokens: set one of DROPLINE_JWT_SECRET, \
         DROPLINE_JWT_PUBLIC_KEY or DROPLINE_JWKS_FILE"
    )]
    NoKey,
    #[error(
        "more than one key source configured for buyers' tokens (secret, public key, JWKS \
         file): set exactly one"
    )]
    SeveralKeys,
    #[error("the JWT secret is {0} bytes; at least {SECRET_BYTES_MIN} are needed for HS256")]
    ShortSecret(usize),
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadKey { path: PathBuf, reason: String },
}
