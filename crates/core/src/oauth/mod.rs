//! OAuth2 access tokens: the client_credentials request (secret, certificate, federated
//! assertion) or a managed identity's endpoint, the cache every send shares, and what a
//! token's claims say about the setup.

mod assertion;
mod claims;
mod credential;
mod fixed_token;
mod managed_identity;
mod provider;
mod request;
mod response;
#[cfg(test)]
mod test_support;
mod token;

pub use assertion::{AssertionCallback, AssertionClaims, AssertionFile, AssertionFuture};
pub use managed_identity::{managed_identity_url, EndpointKind, Identity, ManagedIdentity};

pub use claims::{inspect, Expectations, TokenProblem, TokenReport, GRAPH_SEND_ROLE, SMTP_ROLE};
pub use credential::{CertificateCredential, ClientCredential, CredentialReport};
pub use fixed_token::{FixedToken, FIXED_TOKEN_HINT};
pub use provider::{http_client_builder, TokenListener, TokenProvider};
pub use response::parse_token_response;
pub use token::{AccessToken, Freshness, SentAt, TokenGrant};
