//! OAuth2 access tokens: the client_credentials request, and the cache every send shares.

mod provider;
mod token;

pub use provider::TokenProvider;
pub use token::{parse_token_response, AccessToken, TokenGrant};
