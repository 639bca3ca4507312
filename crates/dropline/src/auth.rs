//! How a gateway knows its buyers, from flags and environment: one key
//! source (a shared secret, a PEM public key or a JWKS file), or
//! authentication explicitly off. On by default: `serve` and `gateway`
//! refuse to start without a key unless told `--insecure-no-auth`
//! (`DROPLINE_AUTH=off`), and say so loudly when they are. And how
//! operators are known: a token of their own, or this machine only.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use dropline_gateway::{BuyerAuth, OperatorAccess};
use dropline_identity::{KeyConfig, Verifier};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    On,
    Off,
}

/// Flags of buyer authentication (read by `serve` and `gateway`).
#[derive(Clone, Args)]
pub struct AuthArgs {
    /// Buyer authentication: `off` lets anyone buy as any `user_id`
    /// (development and trusted networks only); same as --insecure-no-auth.
    #[arg(
        long = "auth",
        env = "DROPLINE_AUTH",
        value_enum,
        default_value = "on",
        global = true
    )]
    pub mode: AuthMode,
    /// Turns buyer authentication off (logged loudly at start).
    #[arg(long, global = true)]
    pub insecure_no_auth: bool,
    /// HS256 shared secret of buyers' tokens (at least 32 bytes).
    #[arg(
        long,
        env = "DROPLINE_JWT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub jwt_secret: Option<String>,
    /// PEM public key of buyers' tokens: RS256 (RSA) or ES256 (P-256).
    #[arg(long, env = "DROPLINE_JWT_PUBLIC_KEY", global = true)]
    pub jwt_public_key: Option<PathBuf>,
    /// JWKS file of an identity provider's keys (by `kid`), read again when it changes.
    #[arg(long, env = "DROPLINE_JWKS_FILE", global = true)]
    pub jwks_file: Option<PathBuf>,
    /// When set, a token's `iss` must be this.
    #[arg(long, env = "DROPLINE_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,
    /// When set, a token's `aud` must contain this.
    #[arg(long, env = "DROPLINE_JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,
    /// The operator token (at least 32 bytes): `/ops/…` and `/metrics` take
    /// it as a Bearer token or as the password of HTTP Basic. Unset, they
    /// answer clients on this machine only.
    #[arg(
        long,
        env = "DROPLINE_OPERATOR_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub operator_token: Option<String>,
    /// Clock skew allowed on a token's `exp` and `nbf`, in seconds.
    #[arg(long, env = "DROPLINE_JWT_LEEWAY_S", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=300), global = true)]
    pub jwt_leeway_s: u64,
}

/// Never prints the secret.
impl std::fmt::Debug for AuthArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthArgs")
            .field("mode", &self.mode)
            .field("insecure_no_auth", &self.insecure_no_auth)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field("jwt_public_key", &self.jwt_public_key)
            .field("jwks_file", &self.jwks_file)
            .field(
                "operator_token",
                &self.operator_token.as_ref().map(|_| "<set>"),
            )
            .finish_non_exhaustive()
    }
}

impl AuthArgs {
    /// Who may use the operator surfaces, or why the process must not start.
    pub fn operator_access(&self) -> anyhow::Result<OperatorAccess> {
        match &self.operator_token {
            Some(token) => OperatorAccess::token(token).map_err(anyhow::Error::msg),
            None => {
                tracing::info!(
                    "no DROPLINE_OPERATOR_TOKEN: /ops/ and /metrics answer clients on this \
                     machine only"
                );
                Ok(OperatorAccess::LoopbackOnly)
            }
        }
    }

    /// The gateway's buyer authentication, or why the process must not start.
    pub fn buyer_auth(&self) -> anyhow::Result<BuyerAuth> {
        if self.insecure_no_auth || self.mode == AuthMode::Off {
            tracing::warn!(
                "BUYER AUTHENTICATION IS OFF (--insecure-no-auth / DROPLINE_AUTH=off): anyone \
                 can buy as any user_id and the per-user limit protects nothing. Development \
                 and trusted networks only."
            );
            return Ok(BuyerAuth::Off);
        }
        let config = KeyConfig {
            secret: self.jwt_secret.clone(),
            public_key_pem: self.jwt_public_key.clone(),
            jwks_file: self.jwks_file.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_s: self.jwt_leeway_s,
        };
        let verifier = Verifier::from_config(&config).map_err(|err| {
            anyhow::anyhow!(
                "{err}; or start with --insecure-no-auth (DROPLINE_AUTH=off) to let anyone buy \
                 as anyone"
            )
        })?;
        Ok(BuyerAuth::Tokens(Arc::new(verifier)))
    }
}
