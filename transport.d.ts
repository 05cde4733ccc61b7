// Public types of smtp-oauth-transport. The shapes the native code returns
// (SentMessageInfo, Envelope, RecipientError) are generated from the Rust code into
// index.d.ts and re-exported here; this file adds the inputs (config, message) and the
// JavaScript wrapper class.
import { EventEmitter } from 'node:events'
import type { Envelope, RecipientError, SentMessageInfo } from './index'

export type { Envelope, RecipientError, SentMessageInfo }

/** The OAuth2 client_credentials settings (`mail.smtp.oauth2` in a TAS local.js). */
export interface OAuth2Options {
  /**
   * The token endpoint URL: `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`
   * (`http://` only for loopback hosts). Required unless `tenantId` is given.
   */
  host?: string
  /** Builds the token URL when `host` is absent (env `TAS_SMTP_OAUTH_TENANT_ID`). */
  tenantId?: string
  /** With `tenantId`: the cloud's login host, or an authority URL. Default `'global'`. */
  cloud?: 'global' | 'usgov' | 'china' | (string & {})
  /** Only `'client_credentials'` is supported (the default). */
  grantType?: 'client_credentials'
  /**
   * The Application (client) ID (env `TAS_SMTP_OAUTH_CLIENT_ID`). Required, except with
   * `managedIdentity` (not allowed there: use `managedIdentity: { clientId }`) and when Azure
   * Workload Identity's `AZURE_CLIENT_ID` supplies it.
   */
  clientId?: string
  /**
   * The client secret's Value, not its ID (env `TAS_SMTP_OAUTH_CLIENT_SECRET`). Exactly one
   * credential: `clientSecret`, `privateKey`, `clientAssertionFile`, `clientAssertion` or
   * `managedIdentity`.
   */
  clientSecret?: string
  /**
   * Workload identity federation: the file the platform writes its token to (e.g.
   * `/var/run/secrets/azure/tokens/azure-identity-token`), read for every token request and
   * sent as the client assertion. Default: `AZURE_FEDERATED_TOKEN_FILE` when no credential is
   * configured and `AZURE_CLIENT_ID` and `AZURE_TENANT_ID` are set too.
   */
  clientAssertionFile?: string
  /** Returns the client assertion (a JWT) for every token request: a vault, a signing service. */
  clientAssertion?: () => string | Promise<string>
  /** How long `clientAssertion` may take, in ms (default 10000). */
  clientAssertionTimeout?: number
  /**
   * The token comes from the Azure platform's managed identity endpoint (VM/VMSS IMDS, App
   * Service/Functions, Azure Arc): `true` for the system-assigned identity, or one id of a
   * user-assigned one.
   */
  managedIdentity?: true | false | { clientId: string } | { objectId: string } | { resourceId: string }
  /**
   * An IMDS-shaped managed identity endpoint instead of the platform's (`IDENTITY_ENDPOINT`,
   * or IMDS at 169.254.169.254); `http://` only on loopback or link-local addresses.
   */
  managedIdentityEndpoint?: string
  /** Certificate credentials: the RSA private key (PEM, PKCS#8 or PKCS#1), instead of a secret. */
  privateKey?: string | Buffer
  /** The certificate registered in the app (PEM): its SHA-256 thumbprint goes in the assertion (PS256). */
  certificate?: string | Buffer
  /** The certificate's SHA-256 thumbprint (hex or base64url), when the certificate itself is not at hand. */
  thumbprintSha256?: string
  /** The certificate's SHA-1 thumbprint as the Azure portal shows it: the assertion is then RS256 with `x5t`. */
  thumbprint?: string
  /**
   * `'https://outlook.office365.com/.default'` for Exchange Online. Required with `host`;
   * with `tenantId` it defaults to the cloud's Exchange scope.
   */
  scope?: string
  /**
   * A proxy for token requests to an `https://` endpoint, e.g. `http://proxy:3128`
   * (`HTTPS_PROXY`/`NO_PROXY` apply otherwise). Refused with an `http://` loopback token URL,
   * which is always reached directly.
   */
  proxy?: string
  /**
   * Extra CA certificates (PEM) the token client trusts besides the usual roots, e.g. a
   * TLS-inspecting proxy's. `NODE_EXTRA_CA_CERTS` is honoured as well; `tls.ca` is not (it is
   * for the SMTP server), and the token endpoint is always verified.
   */
  ca?: string | Buffer | Array<string | Buffer>
  /**
   * Seconds a credential refusal from the token endpoint (a 4xx other than 429) is answered
   * from memory, without a new request or SMTP connection (default 5; `0` disables).
   */
  failureCacheSeconds?: number
  /** Renew a token this many seconds before it expires (default 300, clamped to half the token's lifetime). */
  renewBeforeSeconds?: number
  /** Timeout of one token request in ms (default 30000). */
  timeout?: number
  /**
   * Exchange RBAC for Applications grants the mailbox (`New-ManagementRoleAssignment -Role
   * 'Application SMTP.SendAsApp' -App ... -CustomResourceScope ...`): the token then carries no
   * `SMTP.SendAsApp` role, and none is expected (default `false`).
   */
  rbac?: boolean
}

/**
 * nodemailer's own OAuth2 shape (no top-level `type`): refresh_token grant with `refreshToken`,
 * else client_credentials. A fixed `accessToken` is used first, until `expires` or until refused;
 * given alone (without `clientSecret` or `refreshToken`) it is never renewed.
 */
export interface NodemailerOAuth2Auth {
  type: 'OAuth2' | 'oauth2'
  /** The mailbox to send as. */
  user: string
  /** Required with `clientSecret` / `refreshToken`. */
  clientId?: string
  /** Required unless only a fixed `accessToken` is given. */
  clientSecret?: string
  /** The token endpoint, e.g. `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`. */
  accessUrl?: string
  /** A user's refresh token: tokens then come from the refresh_token grant (else client_credentials). A rotated one the endpoint returns is used next. */
  refreshToken?: string
  /** Default `'https://outlook.office365.com/.default'`. */
  scope?: string
  /** A token obtained elsewhere, used as it is until `expires` or until the server refuses it. */
  accessToken?: string
  /** When `accessToken` expires: ms since the epoch, or a `Date`. */
  expires?: number | Date
}

/** Certificate checks of the SMTP connection (`minVersion` also applies to the token endpoint). */
export interface TlsOptions {
  /**
   * Extra trusted CA certificates (PEM) for the SMTP server. `NODE_EXTRA_CA_CERTS` is honoured
   * as well. The token endpoint has its own: `oauth2.ca`.
   */
  ca?: string | Buffer | Array<string | Buffer>
  /**
   * `false` disables the SMTP server's certificate verification (and logs a warning). Default
   * `true`. The token endpoint is verified regardless.
   */
  rejectUnauthorized?: boolean
  /** `'TLSv1.3'` refuses TLS 1.2. TLS 1.2 is the floor either way. */
  minVersion?: 'TLSv1.2' | 'TLSv1.3'
  /** The name the SMTP server's certificate must match (default: `host`). */
  servername?: string
  /** A client certificate chain (PEM), presented when the server asks for one; needs `key`. */
  cert?: string | Buffer
  /** The private key (PEM) of `cert`. */
  key?: string | Buffer
}

/** A TAS `mail.smtp` object: SMTP (the default) or Microsoft Graph (`api: 'graph'`). */
export type SmtpConfig = SmtpApiConfig | GraphApiConfig

/** Sending over SMTP: to `host`, or to the server a `service` name stands for. */
export type SmtpApiConfig = SmtpApiOptions & ({ host: string } | { service: string })

/** The options of sending over SMTP. */
export interface SmtpApiOptions extends CommonConfig {
  /** `'smtp'` (the default). */
  api?: 'smtp'
  /** `'oauth2'` for XOAUTH2 with client_credentials; omit for PLAIN/LOGIN with `auth.pass`. */
  type?: 'oauth2' | 'OAuth2' | 'login'
  /** SMTP server, e.g. `'smtp.office365.com'`. Required unless `service` names one. */
  host?: string
  /** nodemailer's well-known service names that set host, port and secure when `host` is absent. */
  service?: 'Outlook365' | 'Office365' | 'Hotmail' | 'Outlook' | 'Gmail' | 'Yahoo' | 'iCloud' | 'Zoho' | 'SES' | 'SendGrid' | 'Mailgun' | 'Postmark' | (string & {})
  /** STARTTLS is required even without credentials (it always is with credentials). */
  requireTLS?: boolean
  /** No STARTTLS at all; only without credentials (with them: `ECONFIG`). */
  ignoreTLS?: boolean
  /** Not supported: `true` is `ECONFIG` (a failed STARTTLS never continues in plaintext). */
  opportunisticTLS?: false
  /** Checked against the config: `'XOAUTH2'` for `type: 'oauth2'`, `'PLAIN'`/`'LOGIN'` for `auth.pass`. */
  authMethod?: 'XOAUTH2' | 'PLAIN' | 'LOGIN'
  /** SMTP port, e.g. `587` (STARTTLS) or `465` (implicit TLS). Required with `type: 'oauth2'`; otherwise 587 (465 if `secure`). */
  port?: number | string
}

/** Sending through Microsoft Graph's sendMail (where SMTP AUTH is switched off). */
export interface GraphApiConfig extends CommonConfig {
  api: 'graph'
  /** Graph takes only OAuth2 tokens (application permission `Mail.Send`). */
  type: 'oauth2' | 'OAuth2'
  /** Not used with Graph. */
  host?: string
  /** Not used with Graph. */
  port?: number | string
  /**
   * Graph's API root (default the cloud's: `https://graph.microsoft.com/v1.0`); `https://`,
   * `http://` only on loopback. The token scope defaults to the cloud's Graph scope.
   */
  graphUrl?: string
  /** `false`: no copy in Sent Items (the message is then sent through a draft). Default `true`. */
  saveToSentItems?: boolean
}

/** The fields both kinds share. */
export interface CommonConfig {
  /** Implicit TLS from the first byte; default `true` only for port 465. */
  secure?: boolean
  auth?:
    | {
        /** The mailbox to authenticate as (env `TAS_SMTP_AUTH_USER`); also the fallback `from`. */
        user: string
        /** Password for PLAIN/LOGIN (basic configuration only). */
        pass?: string
      }
    | NodemailerOAuth2Auth
  oauth2?: OAuth2Options
  tls?: TlsOptions
  /** The EHLO name (default: this machine's host name). */
  name?: string
  /** Connect timeout in ms: name lookup, connection attempts and a proxy's handshake together (default 120000). */
  connectionTimeout?: number
  /** Timeout of the name lookup in ms (default 30000, at most `connectionTimeout`). */
  dnsTimeout?: number
  /** Bind the socket to this local IP address; only server addresses of its family are tried. */
  localAddress?: string
  /**
   * Proxy for the SMTP connection: `http://`, `https://` (HTTP CONNECT), `socks5://` or `socks5h://`
   * (the proxy resolves the SMTP host), with credentials in the URL (`http://user:password@proxy:3128`).
   * Kept secret: errors and logs name only its host and port.
   */
  proxy?: string
  /** Timeout for the server's greeting in ms (default 30000). */
  greetingTimeout?: number
  /** Timeout for any single reply in ms (default 600000). */
  socketTimeout?: number
  /** Reuse connections (nodemailer's pool). */
  pool?: boolean
  /**
   * With `pool`: at most this many connections (default 3 for `type: 'oauth2'`, Exchange's limit;
   * else 5). With `api: 'graph'`: concurrent requests, at most 4 (Outlook's limit, the default).
   */
  maxConnections?: number
  /** With `pool`: messages per connection before it is replaced (default 100; `Infinity`: never, 1 to 1000000 otherwise). */
  maxMessages?: number
  /** With `pool`: an idle connection is closed with QUIT after this many ms (default 10000). */
  idleTimeout?: number
  /** With `pool`: at most `rateLimit` messages per `rateDelta` ms; more wait in the queue. */
  rateLimit?: number
  /** The window of `rateLimit` in ms (default 1000). */
  rateDelta?: number
  /** Retries of transient failures (4xx, lost connections, timeouts before the message left). Default 3. */
  maxRetries?: number
  /** Recipients per SMTP transaction (default 500, Exchange Online's limit); more go in following transactions. 1 to 100000. */
  maxRecipientsPerMessage?: number
  /** Send messages in BDAT chunks (RFC 3030) when the server offers CHUNKING (default false: DATA). */
  chunking?: boolean
  /** `true`: attachments may not name local files (`path`); `EMESSAGE` naming the field. A message cannot switch it off. */
  disableFileAccess?: boolean
  /** `true`: attachments may not name URLs (`href`, or an http(s) `path`); `EMESSAGE` naming the field. */
  disableUrlAccess?: boolean
  /** The largest file an attachment `path` may name, in bytes (default 67108864, 64 MiB). */
  maxFileSize?: number
  /**
   * `true` logs to the console; or an object with `debug`/`info`/`warn`/`error` methods. At
   * most 1024 lines wait for it; more are dropped and counted ("N log lines dropped").
   */
  logger?: boolean | Partial<Record<'debug' | 'info' | 'warn' | 'error', (message: string) => void>>
  /** Log the SMTP transcript (with AUTH redacted) at debug level. */
  debug?: boolean
}

/** An address as nodemailer accepts it. */
export type Address = string | { name?: string; address: string }
export type Addresses = Address | Address[]

/** Request headers for an `href` (or URL `path`) fetch. */
export type HttpHeaders = Record<string, string | number>

/** Bytes as nodemailer takes them: a Readable is read to its end before the message is built. */
export type Content = string | Buffer | ArrayBufferView | ArrayBuffer | NodeJS.ReadableStream

/** A part given by its content or where to get it (text, html, alternatives, icalEvent). */
export interface ContentSource {
  /**
   * The content; a string is UTF-8 unless `encoding` says otherwise. Bytes are copied when
   * `sendMail` is called: changing or transferring them afterwards does not affect the message.
   */
  content?: Content
  /**
   * A local file (at most `maxFileSize` bytes; refused with `disableFileAccess`), a `data:` URI,
   * or an http(s) URL (fetched as `href` is).
   */
  path?: string
  /**
   * An http(s) or `data:` URL: https only (plain http to a loopback address), at most 32 MB and
   * 30 s; refused with `disableUrlAccess`.
   */
  href?: string
  httpHeaders?: HttpHeaders
  /** How a string `content` is encoded. */
  encoding?: 'base64' | 'hex' | 'binary' | 'latin1' | 'utf8' | 'utf-8' | 'ascii'
  /** The whole part, headers included, sent as it is. */
  raw?: string | Buffer
}

/** A header value: text, several values (one header line each), or nodemailer's `{ prepared, value }`. */
export type HeaderValue = string | number | string[] | { prepared?: boolean; value: string }
export type Headers = Record<string, HeaderValue> | Array<{ key: string; value: string }>

export interface Attachment extends ContentSource {
  /** The file name; absent: from `path`/`href`, else `attachment-N.<ext>`; `false`: none. */
  filename?: string | false
  /** MIME type (default: from the file name, by the mime_guess table). */
  contentType?: string
  /** Content-ID for inline images referenced as `cid:...` from the html. */
  cid?: string
  contentDisposition?: 'attachment' | 'inline'
  /** Default `'base64'` (`message/*`: 7bit or 8bit); `false` sends the bytes as they are, unlabelled. */
  contentTransferEncoding?: 'base64' | 'quoted-printable' | '7bit' | '8bit' | false
  /** Extra headers of this part. */
  headers?: Headers
}

export interface Alternative extends ContentSource {
  contentType?: string
  filename?: string
  contentTransferEncoding?: 'base64' | 'quoted-printable' | '7bit' | '8bit' | false
  headers?: Headers
}

/** A calendar event: sent as the `text/calendar; method=...` alternative and as `invite.ics`. */
export interface IcalEvent extends ContentSource {
  /** iTIP method, e.g. `'REQUEST'`, `'CANCEL'`, `'REPLY'` (default `'PUBLISH'`). */
  method?: string
  /** The attachment's name (default `'invite.ics'`). */
  filename?: string
}

/** A List-* header value: a URL, an address, `{ url, comment }`, or several. */
export type ListValue = string | { url: string; comment?: string }
export type ListHeaders = Record<string, ListValue | Array<ListValue | ListValue[]>> & {
  /** One-click unsubscribe (RFC 8058): written as `List-Unsubscribe-Post` as given. */
  unsubscribePost?: 'List-Unsubscribe=One-Click'
}

export interface MailMessage {
  from?: Address
  sender?: Address
  to?: Addresses
  cc?: Addresses
  bcc?: Addresses
  replyTo?: Addresses
  subject?: string
  text?: Content | ContentSource
  html?: Content | ContentSource
  watchHtml?: Content | ContentSource
  amp?: Content | ContentSource
  icalEvent?: string | Buffer | IcalEvent
  alternatives?: Alternative[]
  attachments?: Attachment[]
  /** Turn `<img src="data:...">` in `html` into inline attachments. */
  attachDataUrls?: boolean
  headers?: Headers
  /** `(key, value) => key` for the name of every header line written (prepared headers aside); the builder's own names are asked with `''` as the value. */
  normalizeHeaderKey?: (key: string, value: unknown) => string
  list?: ListHeaders
  messageId?: string
  /** A Date, ms since the epoch, or a string as `new Date(string)` reads it. */
  date?: Date | string | number
  inReplyTo?: string
  references?: string | string[]
  priority?: 'high' | 'normal' | 'low'
  /** `X-Mailer`; absent or `false`: none. */
  xMailer?: string | false
  /** The transfer encoding of every text part. */
  encoding?: 'quoted-printable' | 'base64' | '7bit' | '8bit'
  /** The encoding of text that 7bit cannot carry. */
  textEncoding?: 'quoted-printable' | 'base64'
  /** A whole message, sent as it is (envelope from `envelope` or the address fields). */
  raw?: string | Buffer | NodeJS.ReadableStream
  /** The SMTP envelope, when it differs from the headers. */
  envelope?: { from?: string; to?: Addresses }
  /** `true`: this message's attachments may not name local files (cannot reopen the transport's). */
  disableFileAccess?: boolean
  /** `true`: this message's attachments may not name URLs. */
  disableUrlAccess?: boolean
  /** Delivery status notifications (RFC 3461); the server must offer DSN, else `EMESSAGE`. */
  dsn?: DsnOptions
}

/** nodemailer's `dsn` message option. */
export interface DsnOptions {
  /** `ENVID`: returned in every notification. */
  id?: string
  /** `RET`: return the headers only or the full message. */
  return?: 'headers' | 'full'
  /** `NOTIFY`: `'never'`, or any of `'success'`, `'failure'`, `'delay'`. */
  notify?: 'never' | 'success' | 'failure' | 'delay' | Array<'success' | 'failure' | 'delay'> | string
  /** `ORCPT`: the original recipient (`rfc822;` is added when no type is given). */
  recipient?: string
}

/** Every error this package throws or rejects with. */
export interface SmtpOAuthError extends Error {
  /**
   * nodemailer's codes, plus `EPROTOCOL` (the server spoke no valid SMTP, or answered a
   * command with a reply RFC 5321 does not allow it),
   * `EUNKNOWN_DELIVERY` (the message was sent but the connection failed before the server
   * confirmed it: it may have been delivered, and it was not resent) and `EINTERNAL` (a bug
   * in this package stopped this send; not retried).
   */
  code:
    | 'ECONFIG'
    | 'EOAUTH2'
    | 'ECONNECTION'
    | 'ETIMEDOUT'
    | 'ETLS'
    | 'EAUTH'
    | 'EENVELOPE'
    | 'EMESSAGE'
    | 'EPROTOCOL'
    | 'EUNKNOWN_DELIVERY'
    | 'EINTERNAL'
  /** The SMTP reply code, when a reply caused the error. */
  responseCode?: number
  /** The SMTP reply, or the token endpoint's `error_description`. */
  response?: string
  /** The SMTP command that failed (`'AUTH XOAUTH2'`, `'RCPT TO'`, ...), or the Graph step (`'sendMail'`, `'createUploadSession'`, ...). */
  command?: string
  /** What the administrator should do. */
  hint?: string
  /** Which hint it is (`'smtp.token_refused'`, `'oauth.secret_wrong'`, ...): stable, for programs. */
  hintId?: string
  /** The values the hint was filled in with (`user`, `from`, `clientId`, `tenant`, ...). */
  hintParams?: Record<string, string>
  /** The token endpoint's `error` field (`'invalid_client'`, ...). */
  oauthError?: string
  /** The token endpoint's `error_codes` (AADSTS numbers). */
  oauthErrorCodes?: number[]
  /** HTTP status of the token endpoint's (or Microsoft Graph's) answer. */
  statusCode?: number
  /** Microsoft Graph's `error.code` (`'ErrorAccessDenied'`, `'ErrorInvalidRecipients'`, ...); `response` is its message. */
  graphError?: string
  /** Microsoft Graph's `request-id` of the refused request, for Microsoft support. */
  requestId?: string
  /** Refused recipients (`EENVELOPE`). */
  rejected?: string[]
  rejectedErrors?: RecipientError[]
  /** Seconds the token endpoint or Microsoft Graph asked to wait (HTTP 429/503 `Retry-After`). */
  retryAfter?: number
  /** How many times the send was tried. */
  attempts?: number
  /** `true` when retrying cannot help. */
  permanent: boolean
}

/** An access token, e.g. to call Microsoft Graph with the same app. */
export interface AccessToken {
  accessToken: string
  expiresAt: Date
}

export interface TokenProblem {
  code: 'AUDIENCE' | 'ROLE_MISSING' | 'TENANT_MISMATCH' | 'APP_MISMATCH'
  message: string
}

/** The claims of the current token that matter for SMTP (decoded, not verified). */
export interface TokenReport {
  /** `false` for opaque tokens: the other fields are then empty. */
  isJwt: boolean
  aud?: string
  roles: string[]
  tid?: string
  appid?: string
  exp: Date | null
  problems: TokenProblem[]
  /** Which credential obtained the token, and from where (never the credential itself). */
  credential: CredentialReport | null
}

/** The OAuth2 credential a transport uses, for diagnostics. */
export interface CredentialReport {
  kind: 'clientSecret' | 'certificate' | 'clientAssertionFile' | 'clientAssertion' | 'managedIdentity'
  /** Where it comes from: the config field, the token file (and who named it), the managed identity endpoint. */
  source: string
  /** The environment variables that chose or completed it (`AZURE_FEDERATED_TOKEN_FILE`, `IDENTITY_ENDPOINT`, ...). */
  environment: string[]
  /** For a token file or a callback: the last assertion's claims (decoded, not verified). */
  assertion: { iss?: string; sub?: string; aud?: string; exp: Date | null } | null
}

/** Advice for one failure, as data. */
export interface Hint {
  id: string
  params: Record<string, string>
  text: string
}

/** One step of `probe()`. */
export interface ProbeStep {
  step: number
  /** With `api: 'graph'`: `config`, `token`, `claims`, `mailbox`, `send` (no SMTP steps). */
  name: 'config' | 'token' | 'claims' | 'smtp' | 'auth' | 'mailbox' | 'send'
  title: string
  /** `true` passed, `false` failed, `null` not applicable or skipped. */
  ok: boolean | null
  status: 'pass' | 'fail' | 'skip'
  finding: string
  /** What to do (the hint's text; several when several problems were found). */
  fix: string | null
  hint: Hint | null
  /** Worth knowing, not failures: another sender than the mailbox, Exchange's limits. */
  warnings: Hint[]
  /** What the step saw: the config summary, token timing and AADSTS details, claims, DNS, TCP, greeting, EHLO, TLS, certificate chain (base64 DER), the send's info. */
  details: Record<string, any> | null
  elapsedMs: number
}

export interface ProbeReport {
  /** `true` when every step that ran passed. */
  ok: boolean
  steps: ProbeStep[]
}

/** The `token` event: a new access token was obtained (the token itself is never included). */
export interface TokenEvent {
  user: string
  expiresAt: Date
}

export class Transport extends EventEmitter {
  readonly name: string
  readonly version: string
  verify(): Promise<true>
  verify(callback: (err: SmtpOAuthError | null, success?: true) => void): void
  sendMail(message: MailMessage): Promise<SentMessageInfo>
  sendMail(message: MailMessage, callback: (err: SmtpOAuthError | null, info?: SentMessageInfo) => void): void
  /** nodemailer's transport plugin API: sends the message nodemailer built (`mail.message`). */
  send(mail: unknown, callback: (err: SmtpOAuthError | null, info?: SentMessageInfo) => void): void
  /** `true` when a message would be sent without queueing. */
  isIdle(): boolean
  /** The current access token (cached, or fetched now). */
  getAccessToken(): Promise<AccessToken>
  /** The current token's claims and the setup problems they show. */
  inspectToken(): Promise<TokenReport>
  /**
   * Walks the chain as `smtp-oauth-transport doctor` does, with the transport's own code;
   * a broken link is a failed step, never a rejection. `sendTo` also sends a test message.
   */
  probe(options?: { sendTo?: string; from?: string }): Promise<ProbeReport>
  /**
   * Waits for queued messages (`{ force: true }`: rejects them), closes pooled connections
   * with QUIT and releases the transport; the secrets it holds are zeroed.
   */
  close(options?: { force?: boolean }): Promise<void>
  on(event: 'token', listener: (event: TokenEvent) => void): this
  on(event: 'idle', listener: () => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
}

/** Creates a transport from a TAS `mail.smtp` object; throws `ECONFIG` naming the field. */
export function createTransport(config: SmtpConfig, defaults?: MailMessage): Transport
