//! The SASL XOAUTH2 mechanism (Google's and Microsoft's).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroizing;

/// `base64("user=" user "\x01auth=Bearer " token "\x01\x01")`, the initial response of
/// `AUTH XOAUTH2`. Zeroed when dropped: it holds the token.
pub fn xoauth2_initial_response(user: &str, token: &str) -> Zeroizing<String> {
    let raw = concat_exact(&["user=", user, "\x01auth=Bearer ", token, "\x01\x01"]);
    // `encode` allocates the exact output length once.
    Zeroizing::new(STANDARD.encode(raw.as_bytes()))
}

/// The command line `AUTH XOAUTH2 <initial response>`, zeroed when dropped.
pub fn xoauth2_command(initial_response: &str) -> Zeroizing<String> {
    concat_exact(&["AUTH XOAUTH2 ", initial_response])
}

/// `parts` joined in one allocation of the exact size. A `format!` grows its buffer as it
/// writes, and each reallocation frees a partial copy of the token without zeroing it.
fn concat_exact(parts: &[&str]) -> Zeroizing<String> {
    let mut joined = Zeroizing::new(String::with_capacity(parts.iter().map(|p| p.len()).sum()));
    for part in parts {
        joined.push_str(part);
    }
    joined
}

/// The text of a `334` challenge sent after a refused XOAUTH2 response: Google sends
/// base64 JSON such as `{"status":"401","schemes":"bearer","scope":"..."}`.
pub fn decode_challenge(challenge: &str) -> String {
    let challenge = challenge.trim();
    match STANDARD.decode(challenge) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => challenge.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_response_bytes() {
        let encoded = xoauth2_initial_response(
            "someuser@example.com",
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
        );
        // The example from Google's XOAUTH2 documentation.
        assert_eq!(
            encoded.as_str(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn the_command_is_built_in_one_exact_allocation() {
        let token = "t".repeat(2000);
        let initial = xoauth2_initial_response("u@example.com", &token);
        assert_eq!(initial.capacity(), initial.len());
        let command = xoauth2_command(&initial);
        assert_eq!(command.as_str(), format!("AUTH XOAUTH2 {}", initial.as_str()));
        assert_eq!(
            command.capacity(),
            command.len(),
            "no reallocation left a copy behind"
        );
    }

    #[test]
    fn challenge_is_decoded() {
        let challenge = STANDARD.encode(r#"{"status":"401","schemes":"bearer"}"#);
        assert_eq!(
            decode_challenge(&challenge),
            r#"{"status":"401","schemes":"bearer"}"#
        );
        assert_eq!(decode_challenge("not base64!"), "not base64!");
    }
}
