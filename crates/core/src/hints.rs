//! What the administrator should do about an error, from Entra ID's and Exchange Online's
//! documented failures (see `shared/reference/entra-exchange.md` in the project's history).
//!
//! Microsoft says to branch on the OAuth `error` field, not on the AADSTS numbers, which may
//! change: the numbers are used here only to choose a hint, never to decide behaviour.

/// The setup steps of the product page that make Exchange accept an app's token.
pub const EXCHANGE_SETUP_STEPS: &str =
    "check that (1) the app registration has the Office 365 Exchange Online \
application permission SMTP.SendAsApp with admin consent granted, (2) Exchange knows the app: \
New-ServicePrincipal -AppId <client id> -ServiceId <object id of the Enterprise Application, not of the \
app registration>, (3) the service principal may use the mailbox: Add-MailboxPermission -Identity <mailbox> \
-User <object id> -AccessRights FullAccess, and (4) auth.user is that mailbox";

/// The AADSTS codes that are about a client assertion (its issuer, subject, audience or
/// time window): the hint then shows the assertion's decoded claims.
pub const ASSERTION_CODES: [u64; 5] = [70021, 700211, 700212, 700213, 700024];

/// A hint for a token endpoint error, from its AADSTS code or else its `error` field.
pub fn oauth_hint(error: &str, codes: &[u64]) -> Option<&'static str> {
    for code in codes {
        let hint = match code {
            7000215 => "The client secret is wrong. In the app registration's 'Certificates & secrets', copy the secret's Value (shown only once, at creation), not its Secret ID, into TAS_SMTP_OAUTH_CLIENT_SECRET.",
            7000222 => "The client secret has expired. Create a new secret in the app registration's 'Certificates & secrets' and update TAS_SMTP_OAUTH_CLIENT_SECRET.",
            7000218 => "The request carried no client secret. Set mail.smtp.oauth2.clientSecret (TAS_SMTP_OAUTH_CLIENT_SECRET).",
            700016 => "No application with this client id exists in this tenant. Check TAS_SMTP_OAUTH_CLIENT_ID (the Application (client) ID) and TAS_SMTP_OAUTH_TENANT_ID; a multi-tenant app also needs admin consent in this tenant.",
            90002 => "The tenant was not found. Check TAS_SMTP_OAUTH_TENANT_ID and that the token URL uses the right cloud's login host.",
            70011 | 1002012 | 700022 | 700023 => "The scope is invalid: it must be a single resource with /.default, for Exchange Online 'https://outlook.office365.com/.default'.",
            500011 => "The resource in the scope is not in this tenant. Check mail.smtp.oauth2.scope ('https://outlook.office365.com/.default') and the tenant id.",
            700027 => "The client assertion's signature is invalid: upload the certificate to the app registration and check the thumbprint header.",
            700024 => "The client assertion is outside its validity window (expired, or not yet valid): a federated token file that the platform stopped rotating is stale (check the projected service account token volume and its expirationSeconds), a callback returned an old assertion, or this machine's clock is off.",
            70021 => "No federated identity record of the app matches the client assertion. In the app registration (or user-assigned managed identity) under 'Certificates & secrets' > 'Federated credentials', the issuer, subject and audience (api://AzureADTokenExchange) must equal the assertion's iss, sub and aud exactly (for Kubernetes: the cluster's OIDC issuer URL and system:serviceaccount:<namespace>:<service account>).",
            700211 => "No federated credential of the app has the assertion's issuer (iss). Add one with that exact issuer URL, or fix the cluster's OIDC issuer.",
            700212 => "No federated credential of the app has the assertion's audience (aud): it is normally api://AzureADTokenExchange, in the credential and in the token the platform projects.",
            700213 => "No federated credential of the app has the assertion's subject (sub). Add one with that exact subject (for Kubernetes: system:serviceaccount:<namespace>:<service account>).",
            7000112 => "The application is disabled: re-enable its service principal (Enterprise Application) in Entra ID.",
            53003 => "A Conditional Access policy blocks this application: adjust the policy for this service principal.",
            50196 => "Entra ID detected a request loop: tokens are requested too often (they should be cached).",
            _ => continue,
        };
        return Some(hint);
    }
    match error {
        "invalid_client" => Some("The client credentials were refused: check the client id and that the secret is the current secret's Value."),
        "unauthorized_client" => Some("The application is not authorised in this tenant: check the client id, the tenant id and admin consent."),
        "invalid_scope" => Some("The scope is invalid: use 'https://outlook.office365.com/.default'."),
        "temporarily_unavailable" => Some("Entra ID is temporarily unavailable: try again later."),
        _ => None,
    }
}

/// The managed identity endpoint did not answer. On IMDS (the Azure VM default) that means
/// this process is not on an Azure VM; `chosen_by` says what picked the endpoint.
pub fn managed_identity_unreachable(imds: bool, chosen_by: &str) -> String {
    if imds {
        format!("The managed identity endpoint ({chosen_by}) is unreachable: this process is not running on an Azure VM or scale set (App Service, Functions and Azure Arc set IDENTITY_ENDPOINT instead). Outside Azure use a client secret, a certificate or a federated credential (clientAssertionFile).")
    } else {
        format!("The managed identity endpoint ({chosen_by}) is unreachable: check that the identity is enabled for this app (Identity blade in the Azure portal).")
    }
}

/// The managed identity endpoint does not know the identity asked for.
pub fn managed_identity_not_found(identity: &str) -> String {
    format!("The endpoint has no {identity} managed identity: assign it to this resource (Identity blade in the Azure portal), or fix mail.smtp.oauth2.managedIdentity. A new assignment can take a few minutes to reach the endpoint.")
}

/// A hint for an SMTP reply, from its enhanced status code (`5.7.3`, ...).
pub fn smtp_hint(code: u16, text: &str) -> Option<String> {
    let enhanced = text.split_whitespace().next().unwrap_or_default();
    let hint = match (code, enhanced) {
        (535, "5.7.139") => "SMTP AUTH is disabled for the tenant or the mailbox (security defaults also disable it). Enable it for the mailbox: Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false (or tenant-wide: Set-TransportConfig -SmtpClientAuthenticationDisabled $false).".to_string(),
        (535, _) | (_, "5.7.3") => format!("The server refused the token. For Exchange Online, {EXCHANGE_SETUP_STEPS}. Also check the token's audience: the scope must be https://outlook.office365.com/.default, not a Graph scope."),
        (530, "5.7.57") => "The server wants AUTH before MAIL FROM: the transport has no credentials configured (mail.smtp.auth).".to_string(),
        (550, "5.7.60") | (554, "5.2.252") => "The sender differs from the authenticated mailbox. Send from auth.user (mail.from), or grant it: Add-RecipientPermission -Identity <from address> -Trustee <mailbox> -AccessRights SendAs.".to_string(),
        (432, "4.3.2") => "More than 3 connections for this mailbox (Exchange's limit): use fewer connections and try again later.".to_string(),
        (554, "5.2.0") if text.contains("SubmissionQuotaExceeded") => "The mailbox's daily recipient quota is exceeded: wait before sending again.".to_string(),
        (421, "4.7.66") => "The server requires TLS 1.2 or later.".to_string(),
        (550, "5.7.30") => "Basic authentication is switched off for client submission: use type 'oauth2'.".to_string(),
        (430, "4.2.0") => "The service principal cannot log on to the mailbox: Add-MailboxPermission -Identity <mailbox> -User <object id> -AccessRights FullAccess.".to_string(),
        (501, "5.5.127") => "The token was about to expire when it was used: it is renewed earlier on the next attempt.".to_string(),
        _ => return None,
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_id_instead_of_value() {
        let hint = oauth_hint("invalid_client", &[7000215]).unwrap();
        assert!(hint.contains("Value"));
        assert!(oauth_hint("invalid_client", &[]).unwrap().contains("client id"));
        assert!(oauth_hint("server_error", &[1]).is_none());
    }

    #[test]
    fn federated_assertion_refusals() {
        let no_match = oauth_hint("invalid_request", &[70021]).unwrap();
        assert!(no_match.contains("api://AzureADTokenExchange") && no_match.contains("subject"));
        let expired = oauth_hint("invalid_client", &[700024]).unwrap();
        assert!(expired.contains("stale") && expired.contains("clock"));
        assert!(ASSERTION_CODES.contains(&700213));
        assert!(managed_identity_unreachable(true, "the Azure VM default (IMDS)")
            .contains("not running on an Azure VM"));
    }

    #[test]
    fn exchange_replies() {
        assert!(smtp_hint(535, "5.7.3 Authentication unsuccessful")
            .unwrap()
            .contains("New-ServicePrincipal"));
        assert!(smtp_hint(
            535,
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled"
        )
        .unwrap()
        .contains("Set-CASMailbox"));
        assert!(smtp_hint(250, "2.0.0 OK").is_none());
    }
}
