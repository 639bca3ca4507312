//! Buyers' tokens for tests and tools: the gateways they start verify
//! HS256 tokens signed with a secret made for the run, and everything that
//! buys on a buyer's behalf (the load test, compare, the end-to-end tests)
//! mints that buyer's token here instead of switching authentication off.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

/// How long a minted token is valid: longer than any run.
const TOKEN_LIFETIME_S: u64 = 6 * 3_600;

/// Signs buyers' tokens with one shared secret.
#[derive(Clone)]
pub struct BuyerTokens {
    secret: String,
    key: EncodingKey,
}

impl std::fmt::Debug for BuyerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BuyerTokens(<secret>)")
    }
}

impl BuyerTokens {
    /// A fresh random secret (64 hex digits), for a stack of this run.
    pub fn random() -> Self {
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Self::with_secret(&secret).expect("a 64-byte secret is a valid HS256 key")
    }

    /// Tokens a gateway configured with `DROPLINE_JWT_SECRET=secret` takes.
    pub fn with_secret(secret: &str) -> anyhow::Result<Self> {
        let key = EncodingKey::from_secret(secret.as_bytes()).context("an HS256 secret")?;
        Ok(Self {
            secret: secret.to_string(),
            key,
        })
    }

    /// The secret, for the environment of the processes that verify.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// A token naming `user` as the buyer (`sub`), valid for hours.
    pub fn mint(&self, user: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = json!({ "sub": user, "iat": now, "exp": now + TOKEN_LIFETIME_S });
        encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .expect("HS256 signing cannot fail with a valid key")
    }

    /// `Bearer <token>`, the Authorization header's value.
    pub fn bearer(&self, user: &str) -> String {
        format!("Bearer {}", self.mint(user))
    }
}
