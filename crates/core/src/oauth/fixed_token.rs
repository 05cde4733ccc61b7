//! nodemailer's fixed `auth.accessToken` (with `auth.expires`, ms since the epoch): a token
//! someone else obtained, handed out until it expires or the server refuses it. With a way
//! to renew (`clientSecret` or `refreshToken`), the provider then asks the endpoint; without
//! one, the send fails and says what to configure instead.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::error::{Error, ErrorKind};
use crate::oauth::token::{AccessToken, SentAt, TokenGrant, MAX_LIFETIME_SECS};
use crate::secret::Secret;

/// What a user with a fixed token should configure so that tokens can be renewed.
pub const FIXED_TOKEN_HINT: &str = "The access token was fixed in the config (auth.accessToken) and this transport cannot renew it. Let the transport obtain its own tokens: the TAS shape, type: 'oauth2' with oauth2: { tenantId, clientId, clientSecret } (or a certificate or managed identity), or in nodemailer's shape add auth.clientId + auth.clientSecret + auth.accessUrl (and auth.refreshToken for a user's token).";

#[derive(Clone)]
pub struct FixedToken {
    pub value: Secret,
    /// `auth.expires`; without it the token is used until refused (or its JWT `exp`).
    pub expires: Option<SystemTime>,
}

impl fmt::Debug for FixedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FixedToken(<redacted>, expires: {:?})", self.expires)
    }
}

impl FixedToken {
    /// The token placed in time as if just obtained, with the margins of any other token:
    /// never used past `expires` (nor past its JWT `exp`).
    pub fn to_access_token(&self, renew_before: Duration) -> AccessToken {
        let sent = SentAt::now();
        let expires_in = match self.expires {
            Some(expires) => expires.duration_since(sent.wall).unwrap_or_default(),
            None => Duration::from_secs_f64(MAX_LIFETIME_SECS),
        };
        TokenGrant {
            access_token: self.value.clone(),
            expires_in: expires_in.min(Duration::from_secs_f64(MAX_LIFETIME_SECS)),
            refresh_in: None,
            refresh_token: None,
        }
        .into_token(sent, renew_before)
    }

    /// Why there is no token to use: the fixed one was refused, or it expired (or is about
    /// to), and nothing can renew it (`EOAUTH2`, never the token).
    pub fn unusable(&self, refused: bool) -> Error {
        let message = if refused {
            "the access token fixed in auth.accessToken was refused by the SMTP server and cannot be renewed"
                .to_string()
        } else {
            match self.expires {
                Some(expires) => format!(
                    "the access token fixed in auth.accessToken expired at {} (auth.expires) and cannot be renewed",
                    httpdate::fmt_http_date(expires)
                ),
                None => "the access token fixed in auth.accessToken has expired (its exp claim) and cannot be renewed".to_string(),
            }
        };
        Error::new(ErrorKind::OAuth2, message).with_hint(FIXED_TOKEN_HINT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::token::Freshness;
    use std::time::Instant;

    fn fixed(expires: Option<SystemTime>) -> FixedToken {
        FixedToken {
            value: Secret::new("canary-fixed-token"),
            expires,
        }
    }

    #[test]
    fn a_fixed_token_is_never_used_past_its_expiry() {
        let expires = SystemTime::now() + Duration::from_secs(600);
        let token = fixed(Some(expires)).to_access_token(Duration::from_secs(300));
        assert!(token.use_until_wall < expires);
        assert!(token.expires_at_wall <= expires);
        let (now, wall) = (Instant::now(), SystemTime::now());
        assert_eq!(token.freshness(now, wall), Freshness::Fresh);
        assert_eq!(token.freshness(now, expires), Freshness::Stale);
        let past =
            fixed(Some(SystemTime::now() - Duration::from_secs(1))).to_access_token(Duration::from_secs(300));
        assert_eq!(
            past.freshness(Instant::now(), SystemTime::now()),
            Freshness::Stale
        );
    }

    #[test]
    fn without_expires_it_is_used_until_refused() {
        let token = fixed(None).to_access_token(Duration::from_secs(300));
        let in_a_year = SystemTime::now() + Duration::from_secs(365 * 86_400);
        assert_eq!(token.freshness(Instant::now(), in_a_year), Freshness::Fresh);
    }

    #[test]
    fn the_errors_name_the_field_and_never_the_token() {
        for err in [
            fixed(None).unusable(true),
            fixed(Some(SystemTime::now())).unusable(false),
        ] {
            assert_eq!(err.code(), "EOAUTH2");
            assert!(err.message().contains("auth.accessToken"), "{}", err.message());
            assert!(err.hint().unwrap().contains("type: 'oauth2'"));
            assert!(!format!("{err:?}").contains("canary"));
        }
        assert!(!format!("{:?}", fixed(None)).contains("canary"));
    }
}
