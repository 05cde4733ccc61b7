//! OAuth2 access tokens: the client_credentials request (secret or certificate), the cache
//! every send shares, and what a token's claims say about the setup.

mod claims;
mod credential;
mod provider;
mod token;

pub use claims::{inspect, Expectations, TokenProblem, TokenReport, SMTP_ROLE};
pub use credential::{CertificateCredential, ClientCredential};
pub use provider::{TokenListener, TokenProvider};
pub use token::{parse_token_response, AccessToken, Freshness, SentAt, TokenGrant};
