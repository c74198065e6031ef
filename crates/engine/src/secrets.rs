//! Agent OS's own credentials: API tokens (only their SHA-256 hashes are stored) and the
//! Standard Webhooks signing secrets used towards HTTP plugins.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Kinds of API token, by the prefix that makes them recognisable (and redactable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Admin,
    Project,
    Run,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Admin => "admin",
            TokenKind::Project => "project",
            TokenKind::Run => "run",
        }
    }

    pub fn parse(s: &str) -> Option<TokenKind> {
        match s {
            "admin" => Some(TokenKind::Admin),
            "project" => Some(TokenKind::Project),
            "run" => Some(TokenKind::Run),
            _ => None,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Admin => "aosa_",
            TokenKind::Project => "aosp_",
            TokenKind::Run => "aosr_",
        }
    }
}

/// `n` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS random source failing is not something Agent OS can work around safely.
    getrandom::fill(&mut buf).expect("operating system random source unavailable");
    buf
}

/// A uniformly random number in [0, 1).
pub fn random_fraction() -> f64 {
    let b = random_bytes::<8>();
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// A new token of `kind`: the text to hand out once, and the hash to store.
pub fn new_token(kind: TokenKind) -> (String, String) {
    let token = format!("{}{}", kind.prefix(), hex::encode(random_bytes::<24>()));
    let hash = hash_token(&token);
    (token, hash)
}

/// The record stored for a token whose hash is `hash` (the token itself is never stored).
pub fn token_record(
    kind: TokenKind,
    name: &str,
    hash: String,
    project_id: Option<String>,
    now: i64,
) -> agent_os_store::TokenRecord {
    agent_os_store::TokenRecord {
        id: agent_os_core::id::new_id(),
        kind: kind.as_str().into(),
        name: name.into(),
        project_id,
        run_id: None,
        hash,
        created_at: now,
        expires_at: None,
        revoked_at: None,
    }
}

/// The stored form of a token. Tokens are 192-bit random values, so a plain SHA-256 is enough
/// (no password stretching needed).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new Standard Webhooks secret, `whsec_<base64 of 32 random bytes>`.
pub fn new_signing_secret() -> String {
    format!("whsec_{}", STANDARD.encode(random_bytes::<32>()))
}

/// The `webhook-signature` value for a message per the Standard Webhooks scheme:
/// `v1,<base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>"))>`.
pub fn sign_webhook(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "signing secret is not valid base64".to_string())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| "bad signing key".to_string())?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_hashed() {
        let (a, ha) = new_token(TokenKind::Run);
        let (b, _) = new_token(TokenKind::Run);
        assert_ne!(a, b);
        assert!(a.starts_with("aosr_") && a.len() == 53);
        assert_eq!(hash_token(&a), ha);
        assert_eq!(agent_os_core::redact::redact_shapes(&a), "[REDACTED]", "our own tokens are redactable");
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // Example values from the Standard Webhooks specification's test vectors.
        let sig = sign_webhook(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn fractions_are_in_range() {
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
