//! An access token and its lifetime: when it is renewed in the background, when it is no
//! longer used, on both the monotonic and the wall clock.

use std::time::{Duration, Instant, SystemTime};

use crate::oauth::claims::token_expiry;
use crate::secret::Secret;

/// An access token and when it stops being valid. Each moment is kept on both clocks: the
/// monotonic one is immune to clock changes, but stops while the machine is suspended; the
/// wall clock keeps running then. A token is only as fresh as both say.
#[derive(Debug)]
pub struct AccessToken {
    pub value: Secret,
    /// Monotonic expiry.
    pub expires_at: Instant,
    /// Wall-clock expiry, also for users and logs.
    pub expires_at_wall: SystemTime,
    /// From here on the next token is fetched in the background; this one is still used.
    pub renew_at: Instant,
    pub renew_at_wall: SystemTime,
    /// From here on this token is not used any more: sends wait for a new one. Kept well
    /// before expiry (Exchange refuses tokens that "will expire soon").
    pub use_until: Instant,
    pub use_until_wall: SystemTime,
}

/// What a cached token is good for at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Still usable, and its successor should be fetched.
    DueForRenewal,
    /// Not to be used any more.
    Stale,
}

impl AccessToken {
    /// The token's state at `now` on the monotonic clock and `now_wall` on the wall clock.
    pub fn freshness(&self, now: Instant, now_wall: SystemTime) -> Freshness {
        if now < self.renew_at && now_wall < self.renew_at_wall {
            Freshness::Fresh
        } else if now < self.use_until && now_wall < self.use_until_wall {
            Freshness::DueForRenewal
        } else {
            Freshness::Stale
        }
    }
}

/// When a token request was sent, on both clocks: a token's lifetime counts from here (the
/// endpoint may have issued it any time after), not from when the answer arrived.
#[derive(Debug, Clone, Copy)]
pub struct SentAt {
    pub instant: Instant,
    pub wall: SystemTime,
}

impl SentAt {
    pub fn now() -> Self {
        SentAt {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// What a successful token response says, before it is placed in time.
#[derive(Debug, PartialEq)]
pub struct TokenGrant {
    pub access_token: Secret,
    pub expires_in: Duration,
    /// Entra ID's optional hint for early renewal.
    pub refresh_in: Option<Duration>,
    /// A new refresh token (rotation), to be used instead of the one sent.
    pub refresh_token: Option<Secret>,
}

impl TokenGrant {
    /// Places the grant in time, counting from when the request was `sent`. The lifetime is
    /// `expires_in`, cut to the token's own `exp` claim if it is a JWT that expires
    /// earlier. Renew (in the background) at `refresh_in`, or `renew_before` ahead of
    /// expiry, with the margin clamped to half the lifetime so that short-lived tokens are
    /// used; stop using it a quarter of that margin (at most a minute) before expiry.
    pub fn into_token(self, sent: SentAt, renew_before: Duration) -> AccessToken {
        let mut lifetime = self.expires_in;
        if let Some(exp) = token_expiry(self.access_token.expose()) {
            lifetime = lifetime.min(exp.duration_since(sent.wall).unwrap_or_default());
        }
        let margin = renew_before.min(lifetime / 2);
        let mut renew_in = lifetime - margin;
        if let Some(refresh_in) = self.refresh_in {
            renew_in = renew_in.min(refresh_in);
        }
        let hard_margin = (margin / 4).min(Duration::from_secs(60));
        let use_for = (lifetime - hard_margin).max(renew_in);
        // `lifetime` is at most MAX_LIFETIME_SECS, which neither clock can overflow.
        AccessToken {
            value: self.access_token,
            expires_at: sent.instant + lifetime,
            expires_at_wall: sent.wall + lifetime,
            renew_at: sent.instant + renew_in,
            renew_at_wall: sent.wall + renew_in,
            use_until: sent.instant + use_for,
            use_until_wall: sent.wall + use_for,
        }
    }
}

/// Longer lifetimes (`expires_in: 1e300`) are taken as this: ~31 years.
pub(crate) const MAX_LIFETIME_SECS: f64 = 1e9;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::test_support::secret;
    use std::time::UNIX_EPOCH;

    fn sent_at(wall_secs: f64) -> SentAt {
        SentAt {
            instant: Instant::now(),
            wall: UNIX_EPOCH + Duration::from_secs_f64(wall_secs),
        }
    }

    fn grant(secs: u64) -> TokenGrant {
        TokenGrant {
            access_token: secret(),
            expires_in: Duration::from_secs(secs),
            refresh_in: None,
            refresh_token: None,
        }
    }

    fn jwt_with_exp(exp: serde_json::Value) -> Secret {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let claims = URL_SAFE_NO_PAD.encode(serde_json::json!({ "exp": exp }).to_string());
        Secret::new(format!("eyJhbGciOiJub25lIn0.{claims}.sig"))
    }

    #[test]
    fn renewal_margin_is_clamped_for_short_tokens() {
        let sent = sent_at(1_000.0);
        let now = sent.instant;
        let long = grant(3599).into_token(sent, Duration::from_secs(300));
        assert_eq!(long.renew_at - now, Duration::from_secs(3299));
        assert_eq!(long.use_until - now, Duration::from_secs(3599 - 60));
        let short = grant(2).into_token(sent, Duration::from_secs(300));
        assert_eq!(short.renew_at - now, Duration::from_secs(1));
        let hinted = TokenGrant {
            refresh_in: Some(Duration::from_secs(600)),
            ..grant(3599)
        };
        assert_eq!(
            hinted.into_token(sent, Duration::from_secs(300)).renew_at - now,
            Duration::from_secs(600)
        );
    }

    #[test]
    fn lifetime_counts_from_when_the_request_was_sent() {
        // The answer took 3 s to arrive: expiry is still 3599 s after sending.
        let sent = sent_at(1_000.0);
        let token = grant(3599).into_token(sent, Duration::from_secs(300));
        assert_eq!(token.expires_at - sent.instant, Duration::from_secs(3599));
        assert_eq!(token.expires_at_wall, UNIX_EPOCH + Duration::from_secs(4599));
        assert_eq!(token.use_until_wall, UNIX_EPOCH + Duration::from_secs(4599 - 60));
    }

    #[test]
    fn a_jwt_is_never_used_past_its_exp_claim() {
        // A 5 s token issued at .954: its exp (whole seconds) is 4.046 s after sending.
        let sent = sent_at(995.954);
        let token = TokenGrant {
            access_token: jwt_with_exp(serde_json::json!(1000)),
            ..grant(5)
        }
        .into_token(sent, Duration::from_secs(300));
        assert_eq!(token.expires_at_wall, UNIX_EPOCH + Duration::from_secs(1000));
        assert!(token.use_until_wall <= UNIX_EPOCH + Duration::from_secs(1000));
        let exp = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(token.freshness(sent.instant, exp), Freshness::Stale);
        // A later exp than expires_in changes nothing; an exp already past means no use.
        let later = TokenGrant {
            access_token: jwt_with_exp(serde_json::json!(99_999)),
            ..grant(5)
        }
        .into_token(sent, Duration::from_secs(300));
        assert_eq!(later.expires_at - sent.instant, Duration::from_secs(5));
        let past = TokenGrant {
            access_token: jwt_with_exp(serde_json::json!(10)),
            ..grant(3599)
        }
        .into_token(sent, Duration::from_secs(300));
        assert_eq!(past.freshness(sent.instant, sent.wall), Freshness::Stale);
    }

    #[test]
    fn a_suspended_machine_does_not_use_a_token_past_its_wall_clock_expiry() {
        let sent = sent_at(1_000.0);
        let token = grant(3599).into_token(sent, Duration::from_secs(300));
        let just_after = sent.instant + Duration::from_secs(1);
        assert_eq!(
            token.freshness(just_after, sent.wall + Duration::from_secs(1)),
            Freshness::Fresh
        );
        // Suspended for two hours: the monotonic clock stood still, the wall clock did not.
        let after_resume = sent.wall + Duration::from_secs(7200);
        assert_eq!(token.freshness(just_after, after_resume), Freshness::Stale);
        let near_expiry = sent.wall + Duration::from_secs(3400);
        assert_eq!(token.freshness(just_after, near_expiry), Freshness::DueForRenewal);
    }
}
