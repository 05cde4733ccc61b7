//! What the administrator should do about a failure, as data: a [`Hint`] is an id (stable, for
//! programs), the parameters it was filled in with, and the text rendered from both. An
//! error's `hint` (`err.hint`, `err.hintId`, `err.hintParams`) and the doctor's steps use the
//! same hints; nothing else writes advice.
//!
//! A hint is first rendered with what the failing layer knows (an SMTP reply knows neither
//! the mailbox nor the client id), then again by the transport with its [`HintContext`], so
//! that the PowerShell lines carry the real values.
//!
//! Microsoft says to branch on the OAuth `error` field, not on the AADSTS numbers, which may
//! change: the numbers are used here only to choose a hint, never to decide behaviour. Each
//! rule names the Microsoft page it comes from (see `shared/reference/entra-exchange.md`).

use std::collections::BTreeMap;

use serde::Serialize;

/// Advice for one failure: `id` says which, `params` what it was filled in with, `text`
/// is the rendered sentence(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hint {
    pub id: &'static str,
    pub params: BTreeMap<&'static str, String>,
    pub text: String,
    /// The advice alone; `text` adds what is said before and after it (what the token
    /// showed; a trimmed secret).
    #[serde(skip)]
    body: String,
    #[serde(skip)]
    preface: Option<String>,
    #[serde(skip)]
    note: Option<String>,
    /// Parameters of the preface or note, or of a hint rendered elsewhere: kept when the
    /// body is rendered again.
    #[serde(skip)]
    extra: BTreeMap<&'static str, String>,
}

/// What the transport knows that fills a hint's placeholders; `None` leaves a placeholder.
#[derive(Debug, Clone, Default)]
pub struct HintContext {
    /// `auth.user`: the mailbox.
    pub user: Option<String>,
    /// The sender (`mail.from` or the message's `from`).
    pub from: Option<String>,
    pub client_id: Option<String>,
    /// The tenant id (or domain) of the token URL.
    pub tenant: Option<String>,
    /// `oauth2.rbac`: Exchange RBAC for Applications grants the mailbox, not a token role.
    pub rbac: bool,
    /// The SMTP host is a High Volume Email endpoint.
    pub hve: bool,
    /// The client assertion names its certificate by SHA-256 (`x5t#S256`, PS256).
    pub assertion_sha256: bool,
    /// `SHA-1` and `SHA-256` thumbprints (hex) of the configured certificate, when known.
    pub thumbprints: Option<(String, String)>,
}

impl From<&str> for Hint {
    fn from(text: &str) -> Self {
        Hint::plain("note", text.to_string())
    }
}

impl From<String> for Hint {
    fn from(text: String) -> Self {
        Hint::plain("note", text)
    }
}

impl Hint {
    fn plain(id: &'static str, body: String) -> Self {
        Hint {
            id,
            params: BTreeMap::new(),
            text: body.clone(),
            body,
            preface: None,
            note: None,
            extra: BTreeMap::new(),
        }
    }

    /// The hint `id` rendered with what `context` knows.
    pub fn render(id: &'static str, context: &HintContext) -> Self {
        let mut params = BTreeMap::new();
        let body = body(id, context, &mut params).unwrap_or_default();
        Hint {
            params,
            ..Hint::plain(id, body)
        }
    }

    /// Rendered again with `context` (a hint this module does not render stays as it is).
    pub fn in_context(mut self, context: &HintContext) -> Self {
        let mut params = BTreeMap::new();
        if let Some(body) = body(self.id, context, &mut params) {
            self.body = body;
            self.params = params;
            self.params.extend(self.extra.clone());
            self.assemble();
        }
        self
    }

    /// Says `preface` before the advice.
    pub fn with_preface(mut self, preface: String) -> Self {
        self.preface = Some(preface);
        self.assemble();
        self
    }

    /// Remembers `value` as parameter `name` (what a preface, a note or a hint rendered
    /// outside this module was filled in with).
    pub fn with_param(mut self, name: &'static str, value: &str) -> Self {
        self.extra.insert(name, value.to_string());
        self.params.insert(name, value.to_string());
        self
    }

    /// Says `note` after the advice.
    pub fn with_note(mut self, note: &str) -> Self {
        self.note = Some(note.to_string());
        self.assemble();
        self
    }

    fn assemble(&mut self) {
        let parts = [
            self.preface.as_deref(),
            Some(self.body.as_str()),
            self.note.as_deref(),
        ];
        self.text = parts
            .into_iter()
            .flatten()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
    }
}

/// `value`, remembered as parameter `name`, or `placeholder` when unknown.
fn param(
    params: &mut BTreeMap<&'static str, String>,
    name: &'static str,
    value: Option<&str>,
    placeholder: &str,
) -> String {
    match value.filter(|v| !v.is_empty()) {
        Some(value) => {
            params.insert(name, value.to_string());
            value.to_string()
        }
        None => placeholder.to_string(),
    }
}

/// The Enterprise Application's object id, which no token or config carries.
const OBJECT_ID: &str = "<ENTRA_OBJECT_ID>";
const OBJECT_ID_NOTE: &str = "<ENTRA_OBJECT_ID> is the Object ID of the Enterprise Application (Entra ID > Enterprise applications > your app), not of the App registration.";

/// The text of hint `id` with `context` filled in, or `None` for an id rendered elsewhere.
fn body(id: &str, ctx: &HintContext, params: &mut BTreeMap<&'static str, String>) -> Option<String> {
    let user = param(params, "user", ctx.user.as_deref(), "<mailbox>");
    let client = param(params, "clientId", ctx.client_id.as_deref(), "<client id>");
    let text = match id {
        // learn.microsoft.com/entra/identity-platform/reference-error-codes (AADSTS codes below)
        "oauth.secret_wrong" => "The client secret is wrong. In the app registration's 'Certificates & secrets', copy the secret's Value (shown only once, at creation), not its Secret ID, into mail.smtp.oauth2.clientSecret (TAS_SMTP_OAUTH_CLIENT_SECRET).".to_string(),
        "oauth.secret_expired" => "The client secret has expired. Create a new secret in the app registration's 'Certificates & secrets' and update mail.smtp.oauth2.clientSecret (TAS_SMTP_OAUTH_CLIENT_SECRET), or use a certificate.".to_string(),
        "oauth.secret_missing" => "The request carried no client secret. Set mail.smtp.oauth2.clientSecret (TAS_SMTP_OAUTH_CLIENT_SECRET).".to_string(),
        "oauth.app_not_found" => format!("No application with client id {client} exists in this tenant. Check mail.smtp.oauth2.clientId (TAS_SMTP_OAUTH_CLIENT_ID, the Application (client) ID) and the tenant id (TAS_SMTP_OAUTH_TENANT_ID); a multi-tenant app also needs admin consent in this tenant."),
        // Entra blog post 4405796: service-principal-less authentication ended on 31 March 2026.
        "oauth.service_principal_missing" => {
            let tenant = param(params, "tenant", ctx.tenant.as_deref(), "<tenant id>");
            format!("The app {client} has no service principal (Enterprise Application) in tenant {tenant}: since 31 March 2026 Entra ID refuses apps without one. Create it by granting admin consent (https://login.microsoftonline.com/{tenant}/adminconsent?client_id={client}) or with Microsoft Graph PowerShell: New-MgServicePrincipal -AppId \"{client}\".")
        }
        "oauth.tenant_not_found" => "The tenant was not found. Check the tenant id (TAS_SMTP_OAUTH_TENANT_ID) and that the token URL uses the right cloud's login host.".to_string(),
        "oauth.scope_invalid" => "The scope is invalid: it must be a single resource with /.default, for Exchange Online 'https://outlook.office365.com/.default'.".to_string(),
        "oauth.resource_not_in_tenant" => "The resource in the scope is not in this tenant. Check mail.smtp.oauth2.scope ('https://outlook.office365.com/.default') and the tenant id.".to_string(),
        // MicrosoftDocs entra-docs PR #1301, msal-js #8339: x5t#S256 (PS256) refused where x5t (RS256) works.
        "oauth.certificate_not_registered" => {
            let prints = match &ctx.thumbprints {
                Some((sha1, sha256)) => {
                    params.insert("sha1", sha1.clone());
                    params.insert("sha256", sha256.clone());
                    format!(" The configured certificate's thumbprints: SHA-1 {sha1}, SHA-256 {sha256}; the portal's 'Certificates & secrets' shows the SHA-1 one.")
                }
                None => String::new(),
            };
            let try_sha1 = if ctx.assertion_sha256 {
                " The assertion named the certificate by its SHA-256 thumbprint (x5t#S256, PS256), which some tenants refuse: set mail.smtp.oauth2.thumbprint to the SHA-1 thumbprint instead of certificate (the assertion is then RS256 with x5t)."
            } else {
                ""
            };
            format!("Entra ID does not know the key that signed the client assertion: upload this certificate to the app registration ('Certificates & secrets' > Certificates) and check that it is the registered one.{try_sha1}{prints}")
        }
        "oauth.assertion_time" => "The client assertion is outside its validity window (expired, or not yet valid): a federated token file that the platform stopped rotating is stale (check the projected service account token volume and its expirationSeconds), a callback returned an old assertion, or this machine's clock is off.".to_string(),
        // learn.microsoft.com/entra/workload-id/workload-identity-federation (AADSTS70021, 700211-700213)
        "oauth.federation_no_match" => "No federated identity record of the app matches the client assertion. In the app registration (or user-assigned managed identity) under 'Certificates & secrets' > 'Federated credentials', the issuer, subject and audience (api://AzureADTokenExchange) must equal the assertion's iss, sub and aud exactly (for Kubernetes: the cluster's OIDC issuer URL and system:serviceaccount:<namespace>:<service account>).".to_string(),
        "oauth.federation_issuer" => "No federated credential of the app has the assertion's issuer (iss). Add one with that exact issuer URL, or fix the cluster's OIDC issuer.".to_string(),
        "oauth.federation_audience" => "No federated credential of the app has the assertion's audience (aud): it is normally api://AzureADTokenExchange, in the credential and in the token the platform projects.".to_string(),
        "oauth.federation_subject" => "No federated credential of the app has the assertion's subject (sub). Add one with that exact subject (for Kubernetes: system:serviceaccount:<namespace>:<service account>).".to_string(),
        "oauth.app_disabled" => "The application is disabled: re-enable its service principal (Enterprise Application) in Entra ID.".to_string(),
        "oauth.conditional_access" => "A Conditional Access policy blocks this application: adjust the policy for this service principal.".to_string(),
        "oauth.request_loop" => "Entra ID detected a request loop: tokens are requested too often (they should be cached).".to_string(),
        "oauth.invalid_client" => format!("The client credentials were refused: check the client id ({client}) and that the secret is the current secret's Value."),
        "oauth.unauthorized_client" => format!("The application {client} is not authorised in this tenant: check the client id, the tenant id and admin consent."),
        "oauth.invalid_scope" => "The scope is invalid: use 'https://outlook.office365.com/.default'.".to_string(),
        "oauth.unavailable" => "Entra ID is temporarily unavailable: try again later.".to_string(),
        // learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
        "claims.role_missing" if ctx.hve => hve_access(ctx, params, &client),
        "claims.role_missing" => format!("In the app registration: API permissions > Add a permission > APIs my organization uses > Office 365 Exchange Online > Application permissions > SMTP.SendAsApp, then 'Grant admin consent'. If the mailbox is granted through Exchange RBAC for Applications instead (no such role in the token), set mail.smtp.oauth2.rbac: true (doctor: --rbac). App {client}."),
        "claims.audience" => "Set mail.smtp.oauth2.scope to 'https://outlook.office365.com/.default' (a Microsoft Graph token is refused by SMTP).".to_string(),
        "claims.graph_audience" => "Set mail.smtp.oauth2.scope to 'https://graph.microsoft.com/.default' (the default with api: 'graph'; an Exchange token is refused by Graph).".to_string(),
        "claims.graph_role_missing" => format!("In the app registration: API permissions > Add a permission > Microsoft Graph > Application permissions > Mail.Send, then 'Grant admin consent'. App {client}."),
        "claims.tenant_mismatch" => "Use the Directory (tenant) ID of the tenant where the app is registered in the token URL (TAS_SMTP_OAUTH_TENANT_ID).".to_string(),
        "claims.app_mismatch" => "Use the Application (client) ID of the app the secret belongs to (TAS_SMTP_OAUTH_CLIENT_ID).".to_string(),
        // learn.microsoft.com/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission
        "smtp.auth_disabled" => format!("SMTP AUTH is disabled for the mailbox or the whole tenant (security defaults also disable it). Enable it for this mailbox: Set-CASMailbox -Identity \"{user}\" -SmtpClientAuthenticationDisabled $false, or for the tenant: Set-TransportConfig -SmtpClientAuthenticationDisabled $false (the mailbox setting wins over the tenant's)."),
        "smtp.token_refused" if ctx.hve => format!("The HVE endpoint refused the token. {}", hve_access(ctx, params, &client)),
        "smtp.token_refused" => token_refused(ctx, params, &user, &client),
        "smtp.auth_before_mail" => "The server wants AUTH before MAIL FROM: the transport has no credentials configured (mail.smtp.auth).".to_string(),
        // MicrosoftDocs office-developer-exchange-docs: send-as permission (Add-RecipientPermission)
        "smtp.send_as_denied" => {
            let from = param(params, "from", ctx.from.as_deref(), "<from address>");
            format!("mail.from ({from}) differs from the authenticated mailbox ({user}). Either send as the mailbox: set mail.from to {user}, or let the mailbox send as that address: Add-RecipientPermission -Identity \"{from}\" -Trustee \"{user}\" -AccessRights SendAs.")
        }
        // learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits
        "smtp.connection_limit" => "Exchange Online allows 3 concurrent connections per mailbox (432 4.3.2): set mail.smtp.maxConnections to 3 or less (across every process sending as this mailbox); the message can be retried later.".to_string(),
        "smtp.daily_limit" => "The mailbox reached Exchange Online's daily limit of 10,000 recipients (554 5.2.0): wait up to 24 hours, spread the sending over several mailboxes, or keep the rate down with mail.smtp.rateLimit.".to_string(),
        "smtp.tls_too_old" => "The server requires TLS 1.2 or later.".to_string(),
        // Exchange team blog post 4489835 (27 January 2026): the basic authentication schedule.
        "smtp.basic_auth_retired" => format!("Basic authentication (a password) is switched off for client submission in this tenant. Use OAuth2: type: 'oauth2', auth: {{ user: '{user}' }}, oauth2: {{ tenantId, clientId, clientSecret }} (see the README's configuration). Microsoft's schedule: unchanged through December 2026, off by default for existing tenants at the end of December 2026 (admins can turn it back on), final removal date announced in the second half of 2027."),
        "smtp.mailbox_logon" => format!("The service principal cannot log on to the mailbox: Add-MailboxPermission -Identity \"{user}\" -User \"{OBJECT_ID}\" -AccessRights FullAccess. {OBJECT_ID_NOTE}"),
        "smtp.no_xoauth2" => "Use a server that supports OAuth2 (XOAUTH2): Exchange Online is smtp.office365.com:587.".to_string(),
        "smtp.token_expiring" => "The token was about to expire when it was used: it is renewed earlier on the next attempt.".to_string(),
        // learn.microsoft.com/exchange/mail-flow-best-practices/high-volume-mails-m365
        "exchange.hve_internal_only" => "High Volume Email delivers to recipients inside the organisation only (no Sent Items copy); external recipients are refused.".to_string(),
        // learn.microsoft.com, "SMTP AUTH client submission improvements": 30 messages a minute.
        "exchange.rate" => "Exchange Online accepts 30 messages a minute per mailbox and delays the rest: set mail.smtp.pool: true with rateLimit: 30 (rateDelta: 60000) to keep the pace.".to_string(),
        "exchange.connections" => "Exchange Online allows 3 concurrent connections per mailbox: set mail.smtp.maxConnections to 3 or less.".to_string(),
        // learn.microsoft.com/graph/api/user-sendmail (permissions), .../exchange/permissions-mailbox-rbacapplication
        "graph.access_denied" => format!("Microsoft Graph refused the app for this mailbox. Check, in order: (1) the app registration has the Microsoft Graph *application* permission Mail.Send (not the delegated one) and an administrator granted admin consent; (2) an Exchange application access policy or RBAC for Applications scope may exclude this mailbox: test with `Test-ApplicationAccessPolicy -Identity {user} -AppId {client}` or `Test-ServicePrincipalAuthorization -Identity {client} -Resource {user}`, and include it with `New-ApplicationAccessPolicy -AppId {client} -PolicyScopeGroupId <group with the mailbox> -AccessRight RestrictAccess` or `New-ManagementRoleAssignment -App <service principal> -Role 'Application Mail.Send' -CustomResourceScope <scope>` (changes take up to an hour); (3) messages over 4 MB and saveToSentItems: false go through a draft, which also needs the application permission Mail.ReadWrite."),
        "graph.user_read_all" => format!("GET /users/{user} needs the Microsoft Graph application permission User.Read.All, which sending does not: the mailbox is checked by the first message instead (the doctor's --send-to). Grant User.Read.All only if you want the doctor to check the mailbox first."),
        "graph.unauthorized" => "Microsoft Graph did not accept the access token: it must be issued for Graph (oauth2.scope 'https://graph.microsoft.com/.default', the default with api: 'graph') by the mailbox's tenant.".to_string(),
        "graph.mailbox_not_found" => format!("auth.user ({user}) must be the user principal name (or object id) of a mailbox in the token's tenant, with an Exchange Online licence."),
        "graph.too_large" => "The message is larger than the mailbox's maximum send size (35 MB by default; an Exchange administrator can raise it with Set-Mailbox -MaxSendSize).".to_string(),
        "tls.no_starttls" => "Credentials are never sent without TLS: use the server's submission port with STARTTLS (Exchange Online: smtp.office365.com:587), or port 465 with secure: true; a proxy or antivirus that strips STARTTLS must let it through.".to_string(),
        "tls.untrusted" => "The server's certificate is not signed by a trusted CA: if a TLS-inspecting proxy or a private relay sits in between, add its CA to mail.smtp.tls.ca (PEM) or NODE_EXTRA_CA_CERTS; otherwise something is intercepting the connection.".to_string(),
        "tls.wrong_name" => "The certificate is issued for another name: connect to the name on the certificate (mail.smtp.host), or set mail.smtp.tls.servername to it.".to_string(),
        "tls.expired" => "The server's certificate is outside its validity period: it must be renewed, or this machine's clock is wrong.".to_string(),
        "tls.handshake" => "The server and this machine share no TLS version or cipher (TLS 1.2 or later is required); with secure: true the port must speak TLS from the first byte (465).".to_string(),
        "net.refused" => "Nothing listens there: check mail.smtp.host and mail.smtp.port (Exchange Online: smtp.office365.com:587).".to_string(),
        "net.unreachable" => "A firewall may drop outbound SMTP (many hosting providers block SMTP ports), or the route is broken: check the network path to the server, or configure mail.smtp.proxy.".to_string(),
        "net.unresolved" => "Check mail.smtp.host (Exchange Online: smtp.office365.com) and this machine's DNS.".to_string(),
        "config.oauth2_without_type" => "add type: 'oauth2' to mail.smtp (without it the oauth2 settings are ignored).".to_string(),
        _ => return None,
    };
    // Only what the text was filled in with (and the mode it was chosen by).
    params.retain(|name, value| *name == "rbac" || text.contains(value.as_str()));
    Some(text)
}

/// Exchange's two ways to let an app send as a mailbox, with what is known filled in.
// learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
// MicrosoftDocs office-developer-exchange-docs docs/legacy-protocols/smtp-app-rbac-onboarding.md (RBAC for Applications)
fn token_refused(
    ctx: &HintContext,
    params: &mut BTreeMap<&'static str, String>,
    user: &str,
    client: &str,
) -> String {
    params.insert("rbac", ctx.rbac.to_string());
    let principal = format!(
        "  New-ServicePrincipal -AppId \"{client}\" -ServiceId \"{OBJECT_ID}\" -DisplayName \"SMTP OAuth\""
    );
    let classic = format!("{principal}\n  Add-MailboxPermission -Identity \"{user}\" -User \"{OBJECT_ID}\" -AccessRights FullAccess");
    let rbac = format!("{principal}\n  New-ManagementScope -Name \"SMTP senders\" -RecipientRestrictionFilter \"PrimarySmtpAddress -eq '{user}'\"\n  New-ManagementRoleAssignment -Role 'Application SMTP.SendAsApp' -App \"{OBJECT_ID}\" -CustomResourceScope \"SMTP senders\"");
    let classic = format!("with a mailbox permission (the token carries SMTP.SendAsApp):\n{classic}");
    let rbac =
        format!("with Exchange RBAC for Applications (no role in the token; oauth2.rbac: true):\n{rbac}");
    let ways = match ctx.rbac {
        true => format!("{rbac}\nor {classic}"),
        false => format!("{classic}\nor {rbac}"),
    };
    format!("The server refused the token: Exchange does not know the app, or the app may not use the mailbox {user}.\nRegister the app in Exchange and grant it the mailbox (PowerShell, Connect-ExchangeOnline as an Exchange admin), either {ways}\n{OBJECT_ID_NOTE}\nCheck what exists: Get-ServicePrincipal | Where-Object AppId -eq \"{client}\".\nAlso check the token's audience (scope https://outlook.office365.com/.default, not Graph's) and that auth.user ({user}) is the mailbox that was granted.")
}

// learn.microsoft.com/exchange/mail-flow-best-practices/oauth-high-volume-mails-m365
fn hve_access(ctx: &HintContext, params: &mut BTreeMap<&'static str, String>, client: &str) -> String {
    let account = param(params, "user", ctx.user.as_deref(), "<HVE account>");
    format!("High Volume Email wants the Office 365 Exchange Online application permission Mail.Send (not SMTP.SendAsApp) with admin consent, and the app on the HVE account's allowed list: Add-HVEAppAccess -Identity \"{account}\" -AppIds \"{client}\" (at most 10 apps per account; it takes up to 5 minutes).")
}

/// The AADSTS codes that are about a client assertion (its issuer, subject, audience or
/// time window): the hint then shows the assertion's decoded claims.
pub const ASSERTION_CODES: [u64; 5] = [70021, 700211, 700212, 700213, 700024];

/// The hint id for a token endpoint error, from its AADSTS code or else its `error` field.
pub fn oauth_hint_id(error: &str, codes: &[u64]) -> Option<&'static str> {
    for code in codes {
        let id = match code {
            7000215 => "oauth.secret_wrong",
            7000222 => "oauth.secret_expired",
            7000218 => "oauth.secret_missing",
            700016 => "oauth.app_not_found",
            // AADSTS7000229: the client application is missing a service principal in the tenant.
            7000229 => "oauth.service_principal_missing",
            90002 => "oauth.tenant_not_found",
            70011 | 1002012 | 700022 | 700023 => "oauth.scope_invalid",
            500011 => "oauth.resource_not_in_tenant",
            700027 => "oauth.certificate_not_registered",
            700024 => "oauth.assertion_time",
            70021 => "oauth.federation_no_match",
            700211 => "oauth.federation_issuer",
            700212 => "oauth.federation_audience",
            700213 => "oauth.federation_subject",
            7000112 => "oauth.app_disabled",
            53003 => "oauth.conditional_access",
            50196 => "oauth.request_loop",
            _ => continue,
        };
        return Some(id);
    }
    match error {
        "invalid_client" => Some("oauth.invalid_client"),
        "unauthorized_client" => Some("oauth.unauthorized_client"),
        "invalid_scope" => Some("oauth.invalid_scope"),
        "temporarily_unavailable" => Some("oauth.unavailable"),
        _ => None,
    }
}

/// A hint for a token endpoint error (placeholders for what the caller will fill in).
pub fn oauth_hint(error: &str, codes: &[u64]) -> Option<Hint> {
    oauth_hint_id(error, codes).map(|id| Hint::render(id, &HintContext::default()))
}

/// The managed identity endpoint did not answer (`identity.unreachable`). On IMDS (the Azure
/// VM default) that means this process is not on an Azure VM; `chosen_by` says what picked
/// the endpoint.
pub fn managed_identity_unreachable(imds: bool, chosen_by: &str) -> Hint {
    let text = if imds {
        format!("The managed identity endpoint ({chosen_by}) is unreachable: this process is not running on an Azure VM or scale set (App Service, Functions and Azure Arc set IDENTITY_ENDPOINT instead). Outside Azure use a client secret, a certificate or a federated credential (clientAssertionFile).")
    } else {
        format!("The managed identity endpoint ({chosen_by}) is unreachable: check that the identity is enabled for this app (Identity blade in the Azure portal).")
    };
    Hint::plain("identity.unreachable", text).with_param("endpoint", chosen_by)
}

/// The managed identity endpoint does not know the identity asked for (`identity.not_found`).
pub fn managed_identity_not_found(identity: &str) -> Hint {
    let text = format!("The endpoint has no {identity} managed identity: assign it to this resource (Identity blade in the Azure portal), or fix mail.smtp.oauth2.managedIdentity. A new assignment can take a few minutes to reach the endpoint.");
    Hint::plain("identity.not_found", text).with_param("identity", identity)
}

/// The hint id for an SMTP reply, from its code and enhanced status code (`5.7.3`, ...).
// learn.microsoft.com/exchange/mail-flow-best-practices/how-to-set-up-a-multifunction-device-or-application-to-send-email-using-microsoft-365-or-office-365 (replies)
pub fn smtp_hint_id(code: u16, text: &str) -> Option<&'static str> {
    let enhanced = text.split_whitespace().next().unwrap_or_default();
    let id = match (code, enhanced) {
        (535, "5.7.139") => "smtp.auth_disabled",
        (550, "5.7.30") | (535, "5.7.30") => "smtp.basic_auth_retired",
        (535, _) | (_, "5.7.3") => "smtp.token_refused",
        (530, "5.7.57") => "smtp.auth_before_mail",
        (550, "5.7.60") | (554, "5.2.252") => "smtp.send_as_denied",
        _ if text.contains("SendAsDenied") => "smtp.send_as_denied",
        (432, "4.3.2") => "smtp.connection_limit",
        (554, "5.2.0") if text.contains("SubmissionQuotaExceeded") => "smtp.daily_limit",
        (421, "4.7.66") => "smtp.tls_too_old",
        (430, "4.2.0") => "smtp.mailbox_logon",
        (501, "5.5.127") => "smtp.token_expiring",
        _ => return None,
    };
    Some(id)
}

/// A hint for an SMTP reply (placeholders for what the transport will fill in).
pub fn smtp_hint(code: u16, text: &str) -> Option<Hint> {
    smtp_hint_id(code, text).map(|id| Hint::render(id, &HintContext::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> HintContext {
        HintContext {
            user: Some("box@contoso.com".into()),
            from: Some("noreply@contoso.com".into()),
            client_id: Some("app-1".into()),
            tenant: Some("tenant-1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn secret_id_instead_of_value() {
        let hint = oauth_hint("invalid_client", &[7000215]).unwrap();
        assert_eq!(hint.id, "oauth.secret_wrong");
        assert!(hint.text.contains("Value"));
        assert!(oauth_hint("invalid_client", &[])
            .unwrap()
            .text
            .contains("client id"));
        assert!(oauth_hint("server_error", &[1]).is_none());
    }

    #[test]
    fn federated_assertion_refusals() {
        let no_match = oauth_hint("invalid_request", &[70021]).unwrap();
        assert_eq!(no_match.id, "oauth.federation_no_match");
        assert!(no_match.text.contains("api://AzureADTokenExchange") && no_match.text.contains("subject"));
        let expired = oauth_hint("invalid_client", &[700024]).unwrap();
        assert_eq!(expired.id, "oauth.assertion_time");
        assert!(expired.text.contains("stale") && expired.text.contains("clock"));
        assert_eq!(
            oauth_hint("invalid_request", &[700213]).unwrap().id,
            "oauth.federation_subject"
        );
        assert!(ASSERTION_CODES.contains(&700213));
        let unreachable = managed_identity_unreachable(true, "the Azure VM default (IMDS)");
        assert_eq!(unreachable.id, "identity.unreachable");
        assert_eq!(unreachable.params["endpoint"], "the Azure VM default (IMDS)");
        assert!(unreachable.text.contains("not running on an Azure VM"));
        let not_found = managed_identity_not_found("user-assigned (client id c1)").in_context(&known());
        assert_eq!(not_found.id, "identity.not_found");
        assert_eq!(not_found.params["identity"], "user-assigned (client id c1)");
    }

    #[test]
    fn exchange_replies() {
        let refused = smtp_hint(535, "5.7.3 Authentication unsuccessful").unwrap();
        assert_eq!(refused.id, "smtp.token_refused");
        assert!(refused.text.contains("New-ServicePrincipal"));
        assert!(smtp_hint(
            535,
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled"
        )
        .unwrap()
        .text
        .contains("Set-CASMailbox"));
        assert!(smtp_hint(250, "2.0.0 OK").is_none());
    }

    #[test]
    fn the_context_fills_in_the_powershell_lines() {
        let hint = smtp_hint(554, "5.2.252 SendAsDenied; box@contoso.com not allowed")
            .unwrap()
            .in_context(&known());
        assert_eq!(hint.id, "smtp.send_as_denied");
        assert!(hint.text.contains(
            "Add-RecipientPermission -Identity \"noreply@contoso.com\" -Trustee \"box@contoso.com\" -AccessRights SendAs"
        ));
        assert_eq!(hint.params["from"], "noreply@contoso.com");
    }

    #[test]
    fn a_refused_token_offers_both_ways_rbac_first_when_configured() {
        let hint = Hint::render("smtp.token_refused", &known());
        assert!(hint
            .text
            .contains("Add-MailboxPermission -Identity \"box@contoso.com\""));
        assert!(hint
            .text
            .contains("New-ManagementRoleAssignment -Role 'Application SMTP.SendAsApp' -App"));
        assert!(hint.text.contains("-CustomResourceScope"));
        assert!(hint.text.find("Add-MailboxPermission") < hint.text.find("New-ManagementScope"));
        let rbac = Hint::render(
            "smtp.token_refused",
            &HintContext {
                rbac: true,
                ..known()
            },
        );
        assert!(rbac.text.find("New-ManagementScope") < rbac.text.find("Add-MailboxPermission"));
    }

    #[test]
    fn preface_and_note_survive_a_new_context() {
        let hint = oauth_hint("invalid_client", &[7000215])
            .unwrap()
            .with_preface("Before.".into())
            .with_note("After.")
            .in_context(&known());
        assert!(
            hint.text.starts_with("Before. The client secret is wrong."),
            "{}",
            hint.text
        );
        assert!(hint.text.ends_with("After."), "{}", hint.text);
        let plain = Hint::from("as it is").with_preface("First.".into());
        assert_eq!(plain.in_context(&known()).text, "First. as it is");
    }
}
