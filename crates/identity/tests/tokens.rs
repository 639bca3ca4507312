//! Buyers' tokens against every key source: what names a buyer, and every
//! way a token must not (forged, expired, not yet valid, `alg: none`,
//! algorithm confusion, foreign keys, wrong issuer or audience, no `sub`).
//! The keys are test-only, in tests/fixtures/keys.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use dropline_identity::{KeyConfig, TokenError, Verifier};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{json, Value};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/keys")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(key_file(name)).expect("fixture key")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": now() + 600 })
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("sign")
}

fn hs(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    sign(Algorithm::HS256, &key, None, claims)
}

fn rs(private: &str, kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&pem(private)).expect("rsa key");
    sign(Algorithm::RS256, &key, kid, claims)
}

fn es(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&pem("ec-private.pem")).expect("ec key");
    sign(Algorithm::ES256, &key, kid, claims)
}

fn secret_verifier() -> Verifier {
    Verifier::from_config(&KeyConfig {
        secret: Some(SECRET.into()),
        ..KeyConfig::default()
    })
    .expect("verifier")
}

fn pem_verifier(public: &str) -> Verifier {
    Verifier::from_config(&KeyConfig {
        public_key_pem: Some(key_file(public)),
        ..KeyConfig::default()
    })
    .expect("verifier")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn a_valid_token_names_its_buyer_with_each_kind_of_key() {
    let buyer = |v: &Verifier, t: &str| v.verify(t).map(|b| b.subject);
    assert_eq!(
        buyer(&secret_verifier(), &hs(&claims("ana"))),
        Ok("ana".into())
    );
    assert_eq!(
        buyer(
            &pem_verifier("rsa-public.pem"),
            &rs("rsa-private.pem", None, &claims("bo"))
        ),
        Ok("bo".into())
    );
    assert_eq!(
        buyer(&pem_verifier("ec-public.pem"), &es(None, &claims("cy"))),
        Ok("cy".into())
    );
}

#[test]
fn forged_expired_and_early_tokens_name_nobody() {
    let verifier = secret_verifier();
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims("ana"),
        &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!").expect("key"),
    )
    .expect("sign");
    assert_eq!(verifier.verify(&forged), Err(TokenError::BadSignature));
    let expired = hs(&json!({ "sub": "ana", "exp": now() - 3_600 }));
    assert_eq!(verifier.verify(&expired), Err(TokenError::Expired));
    let early = hs(&json!({ "sub": "ana", "exp": now() + 7_200, "nbf": now() + 3_600 }));
    assert_eq!(verifier.verify(&early), Err(TokenError::NotYetValid));
    let no_exp = hs(&json!({ "sub": "ana" }));
    assert_eq!(
        verifier.verify(&no_exp),
        Err(TokenError::MissingClaim("exp".into()))
    );
    let no_sub = hs(&json!({ "exp": now() + 600 }));
    assert_eq!(
        verifier.verify(&no_sub),
        Err(TokenError::MissingClaim("sub".into()))
    );
    // The signature of one token on another's claims.
    let (a, b) = (hs(&claims("ana")), hs(&claims("eve")));
    let spliced = format!(
        "{}.{}",
        b.rsplit_once('.').expect("jwt").0,
        a.rsplit_once('.').expect("jwt").1
    );
    assert_eq!(verifier.verify(&spliced), Err(TokenError::BadSignature));
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("ana").to_string().as_bytes())
    );
    for verifier in [secret_verifier(), pem_verifier("rsa-public.pem")] {
        assert!(
            matches!(verifier.verify(&unsigned), Err(TokenError::Malformed(_))),
            "alg none"
        );
    }
    // HS256 "signed" with the RSA public key's PEM as the HMAC secret: the
    // classic confusion attack on a verifier that lets the token choose.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&pem("rsa-public.pem")).expect("key"),
        None,
        &claims("ana"),
    );
    assert!(matches!(
        pem_verifier("rsa-public.pem").verify(&confused),
        Err(TokenError::WrongAlgorithm { .. })
    ));
    // An RS256 token against the shared secret, an ES256 one against RSA.
    assert!(matches!(
        secret_verifier().verify(&rs("rsa-private.pem", None, &claims("ana"))),
        Err(TokenError::WrongAlgorithm { .. })
    ));
    assert!(matches!(
        pem_verifier("rsa-public.pem").verify(&es(None, &claims("ana"))),
        Err(TokenError::WrongAlgorithm { .. })
    ));
    // Signed by someone else's RSA key.
    assert_eq!(
        pem_verifier("rsa-public.pem").verify(&rs("foreign-rsa-private.pem", None, &claims("ana"))),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let verifier = Verifier::from_config(&KeyConfig {
        secret: Some(SECRET.into()),
        issuer: Some("https://id.example".into()),
        audience: Some("dropline".into()),
        ..KeyConfig::default()
    })
    .expect("verifier");
    let with = |iss: &str, aud: &str| {
        hs(&json!({ "sub": "ana", "exp": now() + 600, "iss": iss, "aud": aud }))
    };
    assert!(verifier
        .verify(&with("https://id.example", "dropline"))
        .is_ok());
    assert_eq!(
        verifier.verify(&with("https://evil.example", "dropline")),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        verifier.verify(&with("https://id.example", "other")),
        Err(TokenError::WrongAudience)
    );
    // Configured means required: a token without the claim names nobody.
    let without = |claim: &str| {
        let mut claims = json!({ "sub": "ana", "exp": now() + 600, "iss": "https://id.example", "aud": "dropline" });
        claims.as_object_mut().expect("an object").remove(claim);
        verifier.verify(&hs(&claims))
    };
    assert_eq!(without("iss"), Err(TokenError::MissingClaim("iss".into())));
    assert_eq!(without("aud"), Err(TokenError::MissingClaim("aud".into())));
}

fn jwks_with(keys: &[(&str, &str)]) -> String {
    let keys = keys
        .iter()
        .map(|(kid, private)| {
            let (alg, key) = if private.starts_with("ec") {
                (
                    Algorithm::ES256,
                    EncodingKey::from_ec_pem(&pem(private)).expect("ec"),
                )
            } else {
                (
                    Algorithm::RS256,
                    EncodingKey::from_rsa_pem(&pem(private)).expect("rsa"),
                )
            };
            let mut jwk = Jwk::from_encoding_key(&key, alg).expect("jwk");
            jwk.common.key_id = Some((*kid).to_string());
            jwk
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).expect("jwks")
}

#[test]
fn a_jwks_file_picks_the_key_by_kid_and_is_read_again_when_it_changes() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("jwks.json");
    std::fs::write(
        &file,
        jwks_with(&[("r1", "rsa-private.pem"), ("e1", "ec-private.pem")]),
    )
    .expect("write");
    let verifier = Verifier::from_config(&KeyConfig {
        jwks_file: Some(file.clone()),
        ..KeyConfig::default()
    })
    .expect("verifier");
    assert!(verifier
        .verify(&rs("rsa-private.pem", Some("r1"), &claims("ana")))
        .is_ok());
    assert!(verifier.verify(&es(Some("e1"), &claims("ana"))).is_ok());
    // A kid naming the wrong key, no kid, an unknown kid.
    assert_eq!(
        verifier.verify(&rs("foreign-rsa-private.pem", Some("r1"), &claims("ana"))),
        Err(TokenError::BadSignature)
    );
    assert_eq!(
        verifier.verify(&rs("rsa-private.pem", None, &claims("ana"))),
        Err(TokenError::UnknownKey)
    );
    let rotated = rs("foreign-rsa-private.pem", Some("r2"), &claims("ana"));
    assert_eq!(verifier.verify(&rotated), Err(TokenError::UnknownKey));

    // The provider rotates: r2 comes, r1 goes.
    std::fs::write(&file, jwks_with(&[("r2", "foreign-rsa-private.pem")])).expect("rotate");
    std::thread::sleep(Duration::from_millis(1_100));
    assert!(verifier.verify(&rotated).is_ok(), "the new key is used");
    assert_eq!(
        verifier.verify(&rs("rsa-private.pem", Some("r1"), &claims("ana"))),
        Err(TokenError::UnknownKey),
        "the retired key is gone"
    );
    // A broken file keeps the keys read before.
    std::fs::write(&file, "{ not json").expect("break");
    std::thread::sleep(Duration::from_millis(1_100));
    assert!(verifier.verify(&rotated).is_ok());
}

#[test]
fn bad_configuration_is_refused_at_start() {
    let refused = |config: KeyConfig| Verifier::from_config(&config).err().map(|e| e.to_string());
    assert!(refused(KeyConfig::default()).is_some_and(|e| e.contains("DROPLINE_JWT_SECRET")));
    assert!(refused(KeyConfig {
        secret: Some("short".into()),
        ..KeyConfig::default()
    })
    .is_some());
    assert!(refused(KeyConfig {
        secret: Some(SECRET.into()),
        public_key_pem: Some(key_file("rsa-public.pem")),
        ..KeyConfig::default()
    })
    .is_some());
    assert!(refused(KeyConfig {
        public_key_pem: Some(key_file("no-such.pem")),
        ..KeyConfig::default()
    })
    .is_some());
}

proptest! {
    /// The token parser never panics, whatever it is given.
    #[test]
    fn no_input_makes_the_verifier_panic(token in ".{0,400}", parts in proptest::collection::vec("[A-Za-z0-9_=-]{0,60}", 0..5)) {
        let verifier = secret_verifier();
        let _ = verifier.verify(&token);
        let _ = verifier.verify(&parts.join("."));
    }
}
