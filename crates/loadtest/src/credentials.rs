//! How the load test's buyers prove who they are: each buyer sends its
//! own bearer token, as real buyers do, so the gateway verifies one token
//! per request in the burst just as in a real drop.
//!
//! Against its own stack the tool mints tokens with the stack's secret;
//! against someone else's gateway (`--url`) it takes that gateway's secret
//! (`--jwt-secret`) or a file of tokens an identity provider issued
//! (`--tokens-file`, one `user_id token` pair per line, buyer i using line
//! i). Without either it sends none, which only a gateway started with
//! `--insecure-no-auth` takes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use dropline_testkit::BuyerTokens;

/// Where each buyer's identity comes from.
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    /// No tokens: against a gateway with authentication off.
    #[default]
    None,
    /// Tokens minted with the gateway's shared secret; buyer i is `user-{i}`.
    Minted(BuyerTokens),
    /// Tokens from a file: buyer i is its line i.
    Listed(Arc<TokenList>),
}

/// A file's `user_id token` pairs, in order and by user.
#[derive(Debug)]
pub struct TokenList {
    pairs: Vec<(String, String)>,
    by_user: HashMap<String, usize>,
}

/// One buyer: who, and the `Authorization` value to send, if any.
pub struct Buyer {
    pub user: String,
    pub authorization: Option<String>,
}

impl Credentials {
    /// Reads a tokens file: one `user_id token` pair per line (blank lines
    /// and lines starting with `#` skipped).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the tokens file {}", path.display()))?;
        let mut pairs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            match (fields.next(), fields.next(), fields.next()) {
                (Some(user), Some(token), None) => {
                    pairs.push((user.to_string(), token.to_string()))
                }
                _ => anyhow::bail!(
                    "{}:{}: want `user_id token`, found {line:?}",
                    path.display(),
                    n + 1
                ),
            }
        }
        anyhow::ensure!(!pairs.is_empty(), "{}: no tokens", path.display());
        let by_user = pairs
            .iter()
            .enumerate()
            .map(|(i, (user, _))| (user.clone(), i))
            .collect();
        Ok(Self::Listed(Arc::new(TokenList { pairs, by_user })))
    }

    /// Buyer `i` of the crowd.
    pub fn buyer(&self, i: usize) -> anyhow::Result<Buyer> {
        Ok(match self {
            Credentials::None => Buyer {
                user: format!("user-{i}"),
                authorization: None,
            },
            Credentials::Minted(tokens) => {
                let user = format!("user-{i}");
                let authorization = Some(tokens.bearer(&user));
                Buyer {
                    user,
                    authorization,
                }
            }
            Credentials::Listed(list) => {
                let (user, token) = list.pairs.get(i).with_context(|| {
                    format!(
                        "the tokens file has {} buyers; the crowd needs one per buyer",
                        list.pairs.len()
                    )
                })?;
                Buyer {
                    user: user.clone(),
                    authorization: Some(format!("Bearer {token}")),
                }
            }
        })
    }

    /// The `Authorization` value for `user` (to send a purchase again).
    pub fn authorization_for(&self, user: &str) -> Option<String> {
        match self {
            Credentials::None => None,
            Credentials::Minted(tokens) => Some(tokens.bearer(user)),
            Credentials::Listed(list) => list
                .by_user
                .get(user)
                .map(|&i| format!("Bearer {}", list.pairs[i].1)),
        }
    }
}
