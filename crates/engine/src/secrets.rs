//! Agent OS's own credentials: API tokens (only their SHA-256 hashes are stored) and the
//! Standard Webhooks signatures: made towards HTTP plugins, checked on the inbound webhooks that
//! start workflows.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use agent_os_core::token::TokenKind;

/// `n` bytes from the operating system's random source.
#[allow(clippy::expect_used, reason = "without the OS random source no token or secret can be made safely")]
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
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
        kind,
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
    let mac = webhook_mac(secret, id, timestamp, body)?;
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// The HMAC-SHA256 of `"<id>.<timestamp>.<body>"` under a `whsec_` secret, not yet finalized.
fn webhook_mac(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<Hmac<Sha256>, String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "signing secret is not valid base64".to_string())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| "bad signing key".to_string())?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// How far a webhook's timestamp may be from now, either way, in seconds (Standard Webhooks'
/// tolerance): an old message cannot be replayed once its id is forgotten, and a clock far ahead
/// is refused too.
pub const WEBHOOK_TOLERANCE_S: u64 = 5 * 60;

/// Checks an inbound message signed per Standard Webhooks: `timestamp` (seconds, from the
/// `webhook-timestamp` header) within [`WEBHOOK_TOLERANCE_S`] of `now` (seconds), and at least
/// one `v1,<base64>` entry of the space-separated `webhook-signature` header equal to the HMAC of
/// `"<id>.<timestamp>.<body>"` under `secret` (several entries let a sender rotate its secret).
/// Signatures are compared in constant time. The error says what failed, for the log; it is not
/// meant for the sender.
pub fn verify_webhook(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
    signatures_header: &str,
    now: i64,
) -> Result<(), String> {
    if now.abs_diff(timestamp) > WEBHOOK_TOLERANCE_S {
        return Err(format!("timestamp {timestamp} is more than 5 minutes from now ({now})"));
    }
    let mac = webhook_mac(secret, id, timestamp, body)?;
    let candidates: Vec<&str> =
        signatures_header.split_whitespace().filter_map(|entry| entry.strip_prefix("v1,")).collect();
    if candidates.is_empty() {
        return Err("webhook-signature holds no v1,<base64> entry".into());
    }
    // Every candidate is checked (by hmac's constant-time `verify_slice`), so the time taken
    // does not tell which one, if any, matched. One that is not base64 matches nothing.
    let matched = candidates.iter().fold(false, |found, c| {
        let given = STANDARD.decode(c).unwrap_or_default();
        found | mac.clone().verify_slice(&given).is_ok()
    });
    if matched { Ok(()) } else { Err("no signature matches".into()) }
}

/// PBKDF2-HMAC-SHA256 iterations for a new dashboard password (OWASP's 2023 figure).
pub const PASSWORD_ITERATIONS: u32 = 600_000;

/// The most iterations a stored hash may ask for: a hash is ours, but a corrupted or planted
/// one must not hold a login thread for minutes.
const PASSWORD_MAX_ITERATIONS: u32 = 10_000_000;

/// The shortest dashboard password accepted.
pub const PASSWORD_MIN_LEN: usize = 12;

/// The stored form of a dashboard password: a PHC string,
/// `$pbkdf2-sha256$i=600000,l=32$<salt>$<hash>` (salt and hash in unpadded base64).
pub fn hash_password(password: &str) -> String {
    hash_password_with(password, &random_bytes::<16>(), PASSWORD_ITERATIONS)
}

#[allow(clippy::expect_used, reason = "a 16-byte salt and a 32-byte output are within every PHC bound")]
fn hash_password_with(password: &str, salt: &[u8], iterations: u32) -> String {
    use pbkdf2::password_hash::{PasswordHasher, SaltString};
    let params = pbkdf2::Params { rounds: iterations, output_length: 32 };
    let salt = SaltString::encode_b64(salt).expect("a 16-byte salt encodes");
    pbkdf2::Pbkdf2
        .hash_password_customized(
            password.as_bytes(),
            Some(pbkdf2::Algorithm::Pbkdf2Sha256.ident()),
            None,
            params,
            &salt,
        )
        .expect("PBKDF2-SHA256 with 32 bytes of output hashes any password")
        .to_string()
}

/// What checking a password against its stored hash found.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordMatch {
    /// Wrong password, or a stored value that is no hash we made.
    No,
    Yes,
    /// Right, and stored in an older form: store this new hash instead.
    YesRehash(String),
}

/// Whether `password` matches `stored`: a PHC string from [`hash_password`], or the form
/// stored before it, `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`, which still logs in
/// and asks to be rehashed. A malformed `stored` matches nothing.
pub fn verify_password(password: &str, stored: &str) -> PasswordMatch {
    if stored.starts_with('$') {
        return if verify_phc(password, stored) { PasswordMatch::Yes } else { PasswordMatch::No };
    }
    if verify_hex_form(password, stored) {
        PasswordMatch::YesRehash(hash_password(password))
    } else {
        PasswordMatch::No
    }
}

fn verify_phc(password: &str, stored: &str) -> bool {
    use pbkdf2::password_hash::{PasswordHash, PasswordVerifier};
    let Ok(hash) = PasswordHash::new(stored) else { return false };
    let iterations = hash.params.get_decimal("i").unwrap_or(0);
    if iterations == 0 || iterations > PASSWORD_MAX_ITERATIONS {
        return false;
    }
    // The hash names its algorithm; only PBKDF2 is accepted, and the comparison is the
    // crate's, in constant time.
    pbkdf2::Pbkdf2.verify_password(password.as_bytes(), &hash).is_ok()
}

fn verify_hex_form(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iter), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(hash)) = (iter.parse::<u32>(), hex::decode(salt), hex::decode(hash)) else {
        return false;
    };
    if iterations == 0 || iterations > PASSWORD_MAX_ITERATIONS || hash.len() != 32 {
        return false;
    }
    let key = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), &salt, iterations);
    constant_time_eq(&key, &hash)
}

/// Byte equality in time that depends on the lengths only, not on where the bytes differ
/// (`subtle`'s comparison).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_rfc_7914_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1, first 32 bytes.
        let key = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(b"passwd", b"salt", 1);
        assert_eq!(hex::encode(key), "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
        let stored = hash_password_with("correct horse battery", b"0123456789abcdef", 1000);
        assert!(stored.starts_with("$pbkdf2-sha256$i=1000,l=32$"), "{stored}");
        assert_eq!(verify_password("correct horse battery", &stored), PasswordMatch::Yes);
        assert_eq!(verify_password("correct horse batterz", &stored), PasswordMatch::No);
        assert_eq!(verify_password("x", "pbkdf2-sha256$0$00$00"), PasswordMatch::No);
        assert_eq!(verify_password("x", "garbage"), PasswordMatch::No);
        assert_eq!(
            verify_password("x", "$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
            PasswordMatch::No
        );
        let greedy = stored.replace("i=1000", "i=4000000000");
        assert_eq!(verify_password("correct horse battery", &greedy), PasswordMatch::No, "too many iterations");
    }

    #[test]
    fn a_password_stored_in_the_old_hex_form_still_matches_and_asks_for_a_rehash() {
        // The form stored before PHC strings: pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>.
        let salt = b"0123456789abcdef";
        let key = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(b"correct horse battery", salt, 1000);
        let old = format!("pbkdf2-sha256$1000${}${}", hex::encode(salt), hex::encode(key));
        let PasswordMatch::YesRehash(new) = verify_password("correct horse battery", &old) else {
            panic!("the old form no longer verifies");
        };
        assert!(new.starts_with("$pbkdf2-sha256$i=600000,l=32$"), "{new}");
        assert_eq!(verify_password("correct horse battery", &new), PasswordMatch::Yes);
        assert_eq!(verify_password("correct horse batterz", &old), PasswordMatch::No);
        assert_eq!(verify_password("correct horse battery", &old.replace("$1000$", "$0$")), PasswordMatch::No);
    }

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

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const AT: i64 = 1614265330;

    fn signed(secret: &str, body: &[u8]) -> String {
        sign_webhook(secret, "msg_1", AT, body).unwrap()
    }

    #[test]
    fn webhooks_verify_when_signed_with_the_secret() {
        let other = new_signing_secret();
        let good = signed(SECRET, BODY);
        let tampered: &[u8] = br#"{"test": 2432232315}"#;
        // (what, signed timestamp, body, signature header, now, accepted)
        let cases = [
            ("valid", AT, BODY, good.clone(), AT + 10, true),
            ("rotated: the second signature is valid", AT, BODY, format!("{} {good}", signed(&other, BODY)), AT, true),
            ("rotated: the first signature is valid", AT, BODY, format!("{good} {}", signed(&other, BODY)), AT, true),
            ("wrong secret", AT, BODY, signed(&other, BODY), AT, false),
            ("tampered body", AT, tampered, good.clone(), AT, false),
            ("timestamp 5 minutes old is still fine", AT, BODY, good.clone(), AT + 300, true),
            ("old timestamp", AT, BODY, good.clone(), AT + 301, false),
            ("future timestamp", AT, BODY, good.clone(), AT - 301, false),
            ("signature for another timestamp", AT + 1, BODY, good.clone(), AT, false),
            ("empty header", AT, BODY, String::new(), AT, false),
            ("no version", AT, BODY, good.trim_start_matches("v1,").to_string(), AT, false),
            ("other version", AT, BODY, good.replacen("v1,", "v2,", 1), AT, false),
            ("truncated", AT, BODY, good[..good.len() - 2].to_string(), AT, false),
            ("garbage", AT, BODY, "v1, v1,,, ,".into(), AT, false),
        ];
        for (what, ts, body, header, now, ok) in cases {
            let got = verify_webhook(SECRET, "msg_1", ts, body, &header, now);
            assert_eq!(got.is_ok(), ok, "{what}: {got:?}");
        }
    }

    #[test]
    fn webhook_verification_survives_extreme_timestamps() {
        let err = verify_webhook(SECRET, "msg_1", i64::MIN, BODY, &signed(SECRET, BODY), i64::MAX).unwrap_err();
        assert!(err.contains("5 minutes"), "{err}");
    }

    #[test]
    fn a_bad_secret_is_an_error_not_a_panic() {
        let err = verify_webhook("whsec_not base64!", "msg_1", AT, BODY, &signed(SECRET, BODY), AT).unwrap_err();
        assert!(err.contains("base64"), "{err}");
    }

    #[test]
    fn constant_time_comparison_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn fractions_are_in_range() {
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
