// Public types of smtp-oauth-transport. The shapes the native code returns
// (SentMessageInfo, Envelope, RecipientError) are generated from the Rust code into
// index.d.ts and re-exported here; this file adds the inputs (config, message) and the
// JavaScript wrapper class.
import { EventEmitter } from 'node:events'
import type { Envelope, RecipientError, SentMessageInfo } from './index'

export type { Envelope, RecipientError, SentMessageInfo }

/** The OAuth2 client_credentials settings (`mail.smtp.oauth2` in a TAS local.js). */
export interface OAuth2Options {
  /** The token endpoint URL: `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`. `http://` only for loopback hosts. */
  host: string
  /** Only `'client_credentials'` is supported (the default). */
  grantType?: 'client_credentials'
  /** The Application (client) ID (env `TAS_SMTP_OAUTH_CLIENT_ID`). */
  clientId: string
  /** The client secret's Value, not its ID (env `TAS_SMTP_OAUTH_CLIENT_SECRET`). */
  clientSecret: string
  /** `'https://outlook.office365.com/.default'` for Exchange Online. */
  scope: string
  /** Renew a token this many seconds before it expires (default 300, clamped to half the token's lifetime). */
  renewBeforeSeconds?: number
  /** Timeout of one token request in ms (default 30000). */
  timeout?: number
}

/** Certificate checks, shared by the SMTP connection and the token endpoint. */
export interface TlsOptions {
  /** Extra trusted CA certificates (PEM). `NODE_EXTRA_CA_CERTS` is honoured as well. */
  ca?: string | Buffer | Array<string | Buffer>
  /** `false` disables certificate verification. Default `true`. */
  rejectUnauthorized?: boolean
  /** The name the SMTP server's certificate must match (default: `host`). */
  servername?: string
}

/** A TAS `mail.smtp` object. */
export interface SmtpConfig {
  /** `'oauth2'` for XOAUTH2 with client_credentials; omit for PLAIN/LOGIN with `auth.pass`. */
  type?: 'oauth2' | 'OAuth2' | 'login'
  /** SMTP server, e.g. `'smtp.office365.com'`. */
  host: string
  /** SMTP port, e.g. `587` (STARTTLS) or `465` (implicit TLS). */
  port: number | string
  /** Implicit TLS from the first byte; default `true` only for port 465. */
  secure?: boolean
  auth?: {
    /** The mailbox to authenticate as (env `TAS_SMTP_AUTH_USER`); also the fallback `from`. */
    user: string
    /** Password for PLAIN/LOGIN (basic configuration only). */
    pass?: string
  }
  oauth2?: OAuth2Options
  tls?: TlsOptions
  /** The EHLO name (default: this machine's host name). */
  name?: string
  /** TCP connect timeout in ms (default 120000). */
  connectionTimeout?: number
  /** Timeout for the server's greeting in ms (default 30000). */
  greetingTimeout?: number
  /** Timeout for any single reply in ms (default 600000). */
  socketTimeout?: number
}

/** An address as nodemailer accepts it. */
export type Address = string | { name?: string; address: string }
export type Addresses = Address | Address[]

export interface Attachment {
  filename?: string
  /** The content; a string is UTF-8 unless `encoding` says otherwise. */
  content?: string | Buffer | Uint8Array
  /** How a string `content` is encoded: `'base64'`, `'hex'`, `'binary'`, `'utf8'`. */
  encoding?: 'base64' | 'hex' | 'binary' | 'latin1' | 'utf8' | 'utf-8'
  /** A local file to attach instead of `content`. */
  path?: string
  /** MIME type (default: guessed from the file name). */
  contentType?: string
  /** Content-ID for inline images referenced as `cid:...` from the html. */
  cid?: string
  contentDisposition?: 'attachment' | 'inline'
}

export interface MailMessage {
  from?: Address
  sender?: Address
  to?: Addresses
  cc?: Addresses
  bcc?: Addresses
  replyTo?: Addresses
  subject?: string
  text?: string | Buffer
  html?: string | Buffer
  attachments?: Attachment[]
  headers?: Record<string, string | string[]> | Array<{ key: string; value: string }>
  messageId?: string
  date?: Date | string | number
  inReplyTo?: string
  references?: string | string[]
  priority?: 'high' | 'normal' | 'low'
  /** The SMTP envelope, when it differs from the headers. */
  envelope?: { from?: string; to?: Addresses }
}

/** Every error this package throws or rejects with. */
export interface SmtpOAuthError extends Error {
  code: 'ECONFIG' | 'EOAUTH2' | 'ECONNECTION' | 'ETIMEDOUT' | 'ETLS' | 'EAUTH' | 'EENVELOPE' | 'EMESSAGE' | 'EPROTOCOL'
  /** The SMTP reply code, when a reply caused the error. */
  responseCode?: number
  /** The SMTP reply, or the token endpoint's `error_description`. */
  response?: string
  /** The SMTP command that failed (`'AUTH XOAUTH2'`, `'RCPT TO'`, ...). */
  command?: string
  /** What the administrator should do. */
  hint?: string
  /** The token endpoint's `error` field (`'invalid_client'`, ...). */
  oauthError?: string
  /** The token endpoint's `error_codes` (AADSTS numbers). */
  oauthErrorCodes?: number[]
  /** HTTP status of the token endpoint's answer. */
  statusCode?: number
  /** Refused recipients (`EENVELOPE`). */
  rejected?: string[]
  rejectedErrors?: RecipientError[]
  /** `true` when retrying cannot help. */
  permanent: boolean
}

export class Transport extends EventEmitter {
  readonly name: string
  readonly version: string
  verify(): Promise<true>
  verify(callback: (err: SmtpOAuthError | null, success?: true) => void): void
  sendMail(message: MailMessage): Promise<SentMessageInfo>
  sendMail(message: MailMessage, callback: (err: SmtpOAuthError | null, info?: SentMessageInfo) => void): void
  /** Releases the transport; the secrets it holds are zeroed. */
  close(): Promise<void>
}

/** Creates a transport from a TAS `mail.smtp` object; throws `ECONFIG` naming the field. */
export function createTransport(config: SmtpConfig, defaults?: MailMessage): Transport
