//! Tokens: HS256 JWTs with `account_id` (a number, or `"*"` for an internal
//! service), `exp` (required) and `aud: "account-usage"`.
//!
//! - The algorithm is pinned to HS256: `none` and every other algorithm are
//!   rejected before the signature is looked at.
//! - The secret is held in a [`Secret`], whose `Debug` prints nothing, so it
//!   cannot reach a log line or an error.
//! - Why a token was refused is logged by the caller at debug level only;
//!   the client always gets the same 401.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const AUDIENCE: &str = "account-usage";

/// Shortest secret accepted: HS256 wants at least its 256-bit output.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("the JWT secret is {0} bytes; at least {MIN_SECRET_BYTES} are needed")]
    ShortSecret(usize),
    #[error("cannot sign the token")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// An HS256 key. Never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// The secret as a file or variable holds it; a trailing newline is not
    /// part of it.
    pub fn new(raw: &[u8]) -> Result<Secret, Error> {
        let trimmed = raw.strip_suffix(b"\n").unwrap_or(raw);
        let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
        if trimmed.len() < MIN_SECRET_BYTES {
            return Err(Error::ShortSecret(trimmed.len()));
        }
        Ok(Secret(trimmed.to_vec()))
    }
}

/// Which accounts a token may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Account(i64),
    /// An internal service token: every account.
    All,
}

impl Grant {
    pub fn allows(self, account: i64) -> bool {
        match self {
            Grant::All => true,
            Grant::Account(a) => a == account,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum AccountClaim {
    Id(i64),
    Any(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    account_id: AccountClaim,
    exp: u64,
    aud: String,
}

/// Verifies tokens with one secret.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Tokens that verified, with their grant and expiry. A page sends one
    /// token with every request, and checking its signature and decoding
    /// its claims again was an eighth of a revalidation's CPU. Only a
    /// token's exact text hits, so a changed byte is verified in full; the
    /// expiry is checked on every hit.
    verified: Arc<Mutex<VerifiedTokens>>,
}

/// A verified token's text, and its grant and `exp`.
type VerifiedTokens = HashMap<Box<str>, (Grant, u64)>;

/// Verified tokens kept; past it the cache starts again (a page's token is
/// back on its next request).
const VERIFIED_TOKENS: usize = 1024;

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(HS256)")
    }
}

impl Verifier {
    pub fn new(secret: &Secret) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.leeway = 30;
        Verifier {
            key: DecodingKey::from_secret(&secret.0),
            validation,
            verified: Arc::default(),
        }
    }

    /// The grant of a valid token; `Err` with why it is not (for the log).
    pub fn verify(&self, token: &str) -> Result<Grant, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.verify_at(token, now)
    }

    /// [`Self::verify`] with the clock at `now` (seconds since the epoch)
    /// for a token verified before; a new token's signature and claims are
    /// checked against the system clock.
    fn verify_at(&self, token: &str, now: u64) -> Result<Grant, String> {
        // The same rule as the full check's: expired once `exp` is more
        // than the leeway behind the clock.
        let live = |exp: u64| exp.saturating_add(self.validation.leeway) >= now;
        let cached = self.verified.lock().expect("verified tokens").get(token).copied();
        if let Some((grant, exp)) = cached {
            return if live(exp) {
                Ok(grant)
            } else {
                Err("ExpiredSignature".into())
            };
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| e.to_string())?;
        let grant = match data.claims.account_id {
            AccountClaim::Id(id) => Grant::Account(id),
            AccountClaim::Any(s) if s == "*" => Grant::All,
            AccountClaim::Any(s) => return Err(format!("account_id {s:?} is neither a number nor \"*\"")),
        };
        let mut verified = self.verified.lock().expect("verified tokens");
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(token.into(), (grant, data.claims.exp));
        Ok(grant)
    }
}

/// A signed token for `grant`, valid for `ttl` from now.
pub fn mint(secret: &Secret, grant: Grant, ttl: Duration) -> Result<String, Error> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    mint_at(secret, grant, now.saturating_add(ttl).as_secs())
}

/// A signed token that expires at `exp` (seconds since the epoch).
pub fn mint_at(secret: &Secret, grant: Grant, exp: u64) -> Result<String, Error> {
    let claims = Claims {
        account_id: match grant {
            Grant::Account(id) => AccountClaim::Id(id),
            Grant::All => AccountClaim::Any("*".into()),
        },
        exp,
        aud: AUDIENCE.into(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret.0),
    )
    .map_err(Error::Sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s.as_bytes()).unwrap()
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_minted_token_verifies_and_carries_its_grant() {
        let s = secret(KEY);
        let v = Verifier::new(&s);
        let t = mint(&s, Grant::Account(7), Duration::from_secs(60)).unwrap();
        assert_eq!(v.verify(&t), Ok(Grant::Account(7)));
        let t = mint(&s, Grant::All, Duration::from_secs(60)).unwrap();
        assert_eq!(v.verify(&t), Ok(Grant::All));
        assert!(Grant::All.allows(3) && Grant::Account(3).allows(3) && !Grant::Account(3).allows(4));
    }

    #[test]
    fn expired_foreign_and_unsigned_tokens_are_refused() {
        let s = secret(KEY);
        let v = Verifier::new(&s);
        assert!(v.verify(&mint_at(&s, Grant::Account(1), 1_000).unwrap()).is_err());
        let other = secret("another-secret-of-at-least-32-bytes!!");
        assert_eq!(
            v.verify(&mint(&other, Grant::Account(1), Duration::from_secs(60)).unwrap()),
            Err("InvalidSignature".into())
        );
        // alg: none, with the same claims.
        let good = mint(&s, Grant::Account(1), Duration::from_secs(60)).unwrap();
        let payload = good.split('.').nth(1).unwrap();
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        assert!(v.verify(&format!("{none_header}.{payload}.")).is_err());
        assert!(v.verify("not-a-token").is_err());
    }

    /// A token for another audience, or one that expired more than the
    /// leeway ago, is refused the first time it is seen (not only once
    /// remembered); one within the leeway is not.
    #[test]
    fn another_audience_or_an_expiry_past_the_leeway_is_refused_on_first_sight() {
        let s = secret(KEY);
        let v = Verifier::new(&s);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let signed = |aud: &str, exp: u64| {
            let claims = Claims {
                account_id: AccountClaim::Id(7),
                exp,
                aud: aud.into(),
            };
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&s.0)).unwrap()
        };
        assert_eq!(v.verify(&signed(AUDIENCE, now + 60)), Ok(Grant::Account(7)));
        assert_eq!(
            v.verify(&signed("another-service", now + 60)),
            Err("InvalidAudience".into())
        );
        assert_eq!(v.verify(&signed(AUDIENCE, now - 40)), Err("ExpiredSignature".into()));
        assert_eq!(v.verify(&signed(AUDIENCE, now - 20)), Ok(Grant::Account(7)));
    }

    /// A token verified once is answered from the cache, but still expires
    /// on time; a token differing by one byte is verified in full.
    #[test]
    fn a_remembered_token_still_expires_and_a_changed_one_is_checked() {
        let s = secret(KEY);
        let v = Verifier::new(&s);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let t = mint_at(&s, Grant::Account(7), now + 60).unwrap();
        assert_eq!(v.verify_at(&t, now), Ok(Grant::Account(7)));
        assert!(v.verified.lock().unwrap().contains_key(t.as_str()));
        assert_eq!(v.verify_at(&t, now + 60 + 30), Ok(Grant::Account(7)));
        assert!(v.verify_at(&t, now + 60 + 31).is_err());
        // The signature's first character changed: still well-formed
        // base64 (the last one may only carry padding bits), so this is
        // refused for its signature, not its shape.
        let at = t.rfind('.').unwrap() + 1;
        let mut forged = t.clone();
        let first = &t[at..=at];
        forged.replace_range(at..=at, if first == "A" { "B" } else { "A" });
        assert_eq!(v.verify_at(&forged, now), Err("InvalidSignature".into()));
        assert!(!v.verified.lock().unwrap().contains_key(forged.as_str()));
    }

    /// Only a number or `"*"` is a grant: an account id sent as a string
    /// (`"7"`), or any other text, is refused, never taken for every
    /// account.
    #[test]
    fn an_account_claim_other_than_a_number_or_a_star_is_refused() {
        let s = secret(KEY);
        let v = Verifier::new(&s);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let signed = |account_id: AccountClaim| {
            let claims = Claims {
                account_id,
                exp: now + 60,
                aud: AUDIENCE.into(),
            };
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&s.0)).unwrap()
        };
        assert_eq!(v.verify(&signed(AccountClaim::Any("*".into()))), Ok(Grant::All));
        for text in ["7", "all", "", " *", "**"] {
            let refused = v.verify(&signed(AccountClaim::Any(text.into())));
            assert!(refused.is_err(), "{text:?}: {refused:?}");
        }
    }

    /// The tokens remembered are bounded: past the limit the memory starts
    /// again, so a stream of new tokens cannot grow it.
    #[test]
    fn remembered_tokens_are_bounded() {
        let s = secret(KEY);
        let v = Verifier::new(&s);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        for i in 0..VERIFIED_TOKENS as u64 + 100 {
            let t = mint_at(&s, Grant::Account(1), now + 60 + i).unwrap();
            assert_eq!(v.verify(&t), Ok(Grant::Account(1)));
            assert!(v.verified.lock().unwrap().len() <= VERIFIED_TOKENS);
        }
    }

    #[test]
    fn short_secrets_are_refused_and_never_printed() {
        assert!(matches!(Secret::new(b"short\n"), Err(Error::ShortSecret(5))));
        let s = Secret::new(format!("{KEY}\n").as_bytes()).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(…)");
        assert!(!format!("{:?}", Verifier::new(&s)).contains(KEY));
    }
}
