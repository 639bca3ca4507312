//! A buyer's token checked against the configured keys.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};

use crate::claims::{Buyer, Claims};
use crate::config::{ConfigError, KeyConfig, SECRET_BYTES_MIN};
use crate::jwks::JwksFile;

/// Checks buyers' tokens; built once at start, shared by every request.
pub struct Verifier {
    keys: Keys,
    /// Issuer, audience, leeway and the claims required; the algorithm is
    /// set per key.
    rules: Validation,
}

enum Keys {
    /// One key, one algorithm (a secret, or a PEM public key).
    Fixed {
        key: DecodingKey,
        /// `rules` with this key's algorithm, ready to use.
        validation: Validation,
    },
    /// An identity provider's keys, by `kid`.
    Jwks(JwksFile),
}

/// Why a token does not name a buyer. Its text goes to the client (in
/// `WWW-Authenticate` and the problem's detail): it names what is wrong
/// with the token, never a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT ({0})")]
    Malformed(String),
    #[error("the token is signed with {got}; this key takes {want} only")]
    WrongAlgorithm { got: String, want: String },
    #[error("the token names no key (kid) this service knows")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's issuer (iss) is not the one configured")]
    WrongIssuer,
    #[error("the token's audience (aud) does not include this service")]
    WrongAudience,
    #[error("the token lacks the {0} claim")]
    MissingClaim(String),
}

impl Verifier {
    pub fn from_config(config: &KeyConfig) -> Result<Self, ConfigError> {
        let mut rules = Validation::new(Algorithm::HS256);
        rules.leeway = config.leeway_s;
        rules.validate_nbf = true;
        // A configured issuer or audience must be in the token: the crate
        // checks them only when present otherwise.
        let mut required = vec!["exp", "sub"];
        match &config.issuer {
            Some(issuer) => {
                rules.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => rules.iss = None,
        }
        match &config.audience {
            Some(audience) => {
                rules.set_audience(&[audience]);
                required.push("aud");
            }
            // An `aud` in the token is not ours to judge then.
            None => rules.validate_aud = false,
        }
        rules.set_required_spec_claims(&required);
        let keys = match (&config.secret, &config.public_key_pem, &config.jwks_file) {
            (None, None, None) => return Err(ConfigError::NoKey),
            (Some(secret), None, None) => fixed(secret_key(secret)?, Algorithm::HS256, &rules),
            (None, Some(path), None) => {
                let (key, algorithm) = pem_key(path)?;
                fixed(key, algorithm, &rules)
            }
            (None, None, Some(path)) => Keys::Jwks(JwksFile::open(path)?),
            _ => return Err(ConfigError::SeveralKeys),
        };
        Ok(Self { keys, rules })
    }

    /// The buyer the token names, if it is valid now.
    pub fn verify(&self, token: &str) -> Result<Buyer, TokenError> {
        let claims = match &self.keys {
            // The header is read once, by `decode`, which refuses any
            // algorithm but the key's: it is on every purchase's path.
            Keys::Fixed { key, validation } => check(token, key, validation)?,
            Keys::Jwks(file) => {
                let header =
                    decode_header(token).map_err(|err| TokenError::Malformed(err.to_string()))?;
                let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
                let (key, algorithm) = file.key(kid).ok_or(TokenError::UnknownKey)?;
                same_algorithm(header.alg, algorithm)?;
                let mut validation = self.rules.clone();
                validation.algorithms = vec![algorithm];
                check(token, &key, &validation)?
            }
        };
        match claims.sub {
            Some(subject) if !subject.is_empty() => Ok(Buyer { subject }),
            _ => Err(TokenError::MissingClaim("sub".into())),
        }
    }
}

fn fixed(key: DecodingKey, algorithm: Algorithm, rules: &Validation) -> Keys {
    let mut validation = rules.clone();
    validation.algorithms = vec![algorithm];
    Keys::Fixed { key, validation }
}

fn secret_key(secret: &str) -> Result<DecodingKey, ConfigError> {
    if secret.len() < SECRET_BYTES_MIN {
        return Err(ConfigError::ShortSecret(secret.len()));
    }
    DecodingKey::from_secret(secret.as_bytes()).map_err(|err| ConfigError::BadKey {
        path: "DROPLINE_JWT_SECRET".into(),
        reason: err.to_string(),
    })
}

/// A PEM public key and the one algorithm it verifies, by its type.
fn pem_key(path: &std::path::Path) -> Result<(DecodingKey, Algorithm), ConfigError> {
    let pem = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((key, Algorithm::ES256));
    }
    Err(ConfigError::BadKey {
        path: path.into(),
        reason: "not an RSA or EC public key in PEM".into(),
    })
}

/// The token's header must ask for the key's own algorithm: a token may
/// not choose how it is checked.
fn same_algorithm(got: Algorithm, want: Algorithm) -> Result<(), TokenError> {
    if got == want {
        Ok(())
    } else {
        Err(TokenError::WrongAlgorithm {
            got: format!("{got:?}"),
            want: format!("{want:?}"),
        })
    }
}

fn check(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Claims, TokenError> {
    decode::<Claims>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|err| match err.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
            // Refused before anything else was checked: name what it asked for.
            ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm {
                got: decode_header(token).map_or_else(|_| "?".into(), |h| format!("{:?}", h.alg)),
                want: format!("{:?}", validation.algorithms[0]),
            },
            _ => TokenError::Malformed(err.to_string()),
        })
}

/// The algorithm a JWK states, or the usual one for its key type.
pub(crate) fn jwk_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    if let Some(stated) = jwk.common.key_algorithm {
        return Algorithm::try_from(stated).ok();
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        _ => None,
    }
}

/// Shared by the JWKS file's key lookups.
pub(crate) type SharedKey = Arc<DecodingKey>;
