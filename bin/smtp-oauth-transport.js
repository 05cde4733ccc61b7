#!/usr/bin/env node
'use strict'
// smtp-oauth-transport's command line, for the administrator and the operator:
//
//   doctor   walks the chain a TAS backend goes through when it sends mail (config, token,
//            token claims, SMTP + STARTTLS + certificate, AUTH XOAUTH2, optionally a real
//            message) and says, for the first link that breaks, what is wrong and what to do.
//   send     sends one message with the same configuration.
//
// Secrets (the client secret, a password, access tokens) are never printed: every line goes
// through a redactor that knows them, in human output, in --json and in error messages.

const { parseArgs } = require('node:util')
const dns = require('node:dns/promises')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const tls = require('node:tls')

const PACKAGE_ROOT = path.join(__dirname, '..')
const { version: VERSION } = require(path.join(PACKAGE_ROOT, 'package.json'))

const EXCHANGE_SCOPE = 'https://outlook.office365.com/.default'
const DEFAULT_SMTP_HOST = 'smtp.office365.com'
const DEFAULT_SMTP_PORT = 587
const tokenUrlFor = (tenant) => `https://login.microsoftonline.com/${tenant}/oauth2/v2.0/token`

// The env vars the product page's local.js reads, by the field they fill.
const SEED_ENV = {
  'auth.user': 'TAS_SMTP_AUTH_USER',
  'oauth2.host': 'TAS_SMTP_OAUTH_TENANT_ID',
  'oauth2.tenantId': 'TAS_SMTP_OAUTH_TENANT_ID',
  'oauth2.clientId': 'TAS_SMTP_OAUTH_CLIENT_ID',
  'oauth2.clientSecret': 'TAS_SMTP_OAUTH_CLIENT_SECRET',
}
const OBJECT_ID = '<ENTRA_OBJECT_ID>'
const OBJECT_ID_NOTE = `${OBJECT_ID} is the Object ID of the Enterprise Application (Entra ID > Enterprise applications > your app), not of the App registration`

const USAGE = `smtp-oauth-transport ${VERSION}

Usage:
  smtp-oauth-transport doctor (--config ./local.js | --env) [options] [--send-to ADDRESS] [--json]
  smtp-oauth-transport send   (--config ./local.js | --env) [options] --to ADDRESS [--subject S] [--text T] [--html H] [--json]
  smtp-oauth-transport --help | --version

Where the configuration comes from:
  --config FILE        a TAS local.js: loaded with require(), mail.smtp and mail.from are used
  --env                the product page's configuration from TAS_SMTP_AUTH_USER, TAS_SMTP_OAUTH_TENANT_ID,
                       TAS_SMTP_OAUTH_CLIENT_ID, TAS_SMTP_OAUTH_CLIENT_SECRET (and optional TAS_SMTP_HOST,
                       TAS_SMTP_PORT; default ${DEFAULT_SMTP_HOST}:${DEFAULT_SMTP_PORT})

Options that override one field (secrets cannot be given on the command line):
  --host HOST          mail.smtp.host                --port PORT        mail.smtp.port
  --secure             mail.smtp.secure (implicit TLS, port 465)
  --user MAILBOX       mail.smtp.auth.user           --from ADDRESS     mail.from
  --client-id ID       mail.smtp.oauth2.clientId     --scope SCOPE      mail.smtp.oauth2.scope
  --tenant TENANT      token URL ${tokenUrlFor('TENANT')}
  --token-url URL      mail.smtp.oauth2.host (the whole token URL)
  --ca FILE            mail.smtp.tls.ca (PEM file of a CA to trust besides the usual roots)
  --servername NAME    mail.smtp.tls.servername (the name the SMTP certificate must carry)

doctor:
  --send-to ADDRESS    also send a test message to ADDRESS (step 6)
  --json               print one JSON object instead of text
  Exit code 0 when every step passed, 1 when one failed, 2 for a usage error.

send:
  --to ADDRESS (repeatable or comma-separated), --subject S, --text T, --html H, --json
`

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  env: { type: 'boolean' },
  host: { type: 'string' },
  port: { type: 'string' },
  secure: { type: 'boolean' },
  user: { type: 'string' },
  from: { type: 'string' },
  'client-id': { type: 'string' },
  scope: { type: 'string' },
  tenant: { type: 'string' },
  'token-url': { type: 'string' },
  ca: { type: 'string' },
  servername: { type: 'string' },
  'send-to': { type: 'string' },
  to: { type: 'string', multiple: true },
  subject: { type: 'string' },
  text: { type: 'string' },
  html: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
}

class UsageError extends Error {}

// ---------------------------------------------------------------------------------------
// Redaction: every byte this tool writes goes through redact().

class Redactor {
  #forms = new Set()

  /** Remembers a secret; `user` adds the XOAUTH2 blob a token travels in. */
  add(secret, user) {
    if (typeof secret !== 'string' || secret.length < 4) return
    this.#forms.add(secret)
    this.#forms.add(encodeURIComponent(secret))
    this.#forms.add(new URLSearchParams({ s: secret }).toString().slice(2))
    this.#forms.add(JSON.stringify(secret).slice(1, -1))
    if (user !== undefined) {
      this.#forms.add(Buffer.from(`user=${user}\x01auth=Bearer ${secret}\x01\x01`).toString('base64'))
    }
  }

  redact(text) {
    let out = String(text)
    for (const form of this.#forms) out = out.split(form).join('[redacted]')
    return out
  }
}

// ---------------------------------------------------------------------------------------
// Output: text with ✔/✘ and a spinner on a terminal, or one JSON object.

class Output {
  constructor({ json, redactor, stream = process.stdout }) {
    this.json = json
    this.redactor = redactor
    this.stream = stream
    this.spinner = null
  }

  line(text = '') {
    if (!this.json) this.stream.write(this.redactor.redact(text) + '\n')
  }

  error(text) {
    process.stderr.write(this.redactor.redact(text) + '\n')
  }

  printJson(value) {
    this.stream.write(this.redactor.redact(JSON.stringify(value, null, 2)) + '\n')
  }

  /** Shows what a network step is doing: a spinner on a terminal, a plain line otherwise. */
  progress(text) {
    if (this.json) return
    this.stopProgress()
    if (!this.stream.isTTY) {
      this.line(`  … ${text}`)
      return
    }
    const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
    let i = 0
    const draw = () => this.stream.write(`\r\x1b[K  ${frames[i++ % frames.length]} ${this.redactor.redact(text)}`)
    draw()
    this.spinner = setInterval(draw, 80)
  }

  stopProgress() {
    if (this.spinner) {
      clearInterval(this.spinner)
      this.spinner = null
      this.stream.write('\r\x1b[K')
    }
  }
}

// ---------------------------------------------------------------------------------------
// Configuration: from a local.js, or from the product page's env vars, plus flag overrides.

function isSet(value) {
  return value !== undefined && value !== null && value !== ''
}

/** The product page's mail config, built from the process environment as its local.js would. */
function configFromEnv(env) {
  return {
    smtp: {
      type: 'oauth2',
      host: env.TAS_SMTP_HOST || DEFAULT_SMTP_HOST,
      port: env.TAS_SMTP_PORT || DEFAULT_SMTP_PORT,
      auth: { user: env.TAS_SMTP_AUTH_USER },
      oauth2: {
        host: tokenUrlFor(env.TAS_SMTP_OAUTH_TENANT_ID),
        grantType: 'client_credentials',
        clientSecret: env.TAS_SMTP_OAUTH_CLIENT_SECRET,
        clientId: env.TAS_SMTP_OAUTH_CLIENT_ID,
        scope: EXCHANGE_SCOPE,
      },
    },
    from: undefined,
  }
}

/** Loads a local.js the way TAS does (require) and takes mail.smtp and mail.from. */
function configFromFile(file) {
  const resolved = path.resolve(file)
  if (!fs.existsSync(resolved)) throw new UsageError(`--config: ${file} does not exist`)
  let exported
  try {
    exported = require(resolved)
  } catch (err) {
    return { loadError: `${file} could not be loaded: ${err.message}` }
  }
  const mail = (exported && exported.mail) || (exported && exported.default && exported.default.mail)
  if (!mail || typeof mail.smtp !== 'object' || mail.smtp === null) {
    return { loadError: `${file} has no mail.smtp object (it should export { mail: { smtp, from } })` }
  }
  return { smtp: mail.smtp, from: mail.from }
}

/** A copy of `smtp` with the single-field flags applied (the original object is untouched). */
function applyOverrides(smtp, values) {
  const out = { ...smtp, auth: { ...smtp.auth }, oauth2: { ...smtp.oauth2 }, tls: { ...smtp.tls } }
  if (values.host !== undefined) out.host = values.host
  if (values.port !== undefined) out.port = /^\d+$/.test(values.port) ? Number(values.port) : values.port
  if (values.secure) out.secure = true
  if (values.user !== undefined) out.auth.user = values.user
  if (values['client-id'] !== undefined) out.oauth2.clientId = values['client-id']
  if (values.scope !== undefined) out.oauth2.scope = values.scope
  if (values.tenant !== undefined) out.oauth2.host = tokenUrlFor(values.tenant)
  if (values['token-url'] !== undefined) out.oauth2.host = values['token-url']
  if (values.ca !== undefined) {
    try {
      out.tls.ca = fs.readFileSync(values.ca, 'utf8')
    } catch (err) {
      throw new UsageError(`--ca: cannot read ${values.ca}: ${err.code || err.message}`)
    }
  }
  if (values.servername !== undefined) out.tls.servername = values.servername
  for (const key of ['auth', 'oauth2', 'tls']) {
    if (smtp[key] === undefined && Object.keys(out[key]).length === 0) delete out[key]
  }
  return out
}

/**
 * Everything a command needs to know about where the config came from.
 * @returns {{ source: string, fromEnv: boolean, smtp?: object, from?: string, loadError?: string, overridden: Set<string> }}
 */
function loadConfig(values, env) {
  if (values.config !== undefined && values.env) throw new UsageError('give either --config or --env, not both')
  if (values.config === undefined && !values.env)
    throw new UsageError('say where the configuration is: --config ./local.js or --env')
  const base = values.env ? configFromEnv(env) : configFromFile(values.config)
  const source = values.env ? 'environment (TAS_SMTP_* variables)' : values.config
  const overridden = new Set(
    [
      values.user !== undefined && 'auth.user',
      values['client-id'] !== undefined && 'oauth2.clientId',
      ...(values.tenant !== undefined || values['token-url'] !== undefined ? ['oauth2.host', 'oauth2.tenantId'] : []),
    ].filter(Boolean),
  )
  if (base.loadError) return { source, fromEnv: false, loadError: base.loadError, overridden }
  return {
    source,
    fromEnv: !!values.env,
    smtp: applyOverrides(base.smtp, values),
    from: values.from !== undefined ? values.from : base.from,
    overridden,
  }
}

/** Tells the redactor every secret a config holds. */
function rememberSecrets(redactor, smtp) {
  const oauth2 = smtp.oauth2 || {}
  redactor.add(oauth2.clientSecret)
  redactor.add(oauth2.privateKey && String(oauth2.privateKey))
  redactor.add(smtp.auth && smtp.auth.pass)
}

function isOAuth2(smtp) {
  return typeof smtp.type === 'string' && smtp.type.toLowerCase() === 'oauth2'
}

function smtpPort(smtp) {
  const port = Number(smtp.port)
  return Number.isInteger(port) && port > 0 ? port : smtp.secure ? 465 : DEFAULT_SMTP_PORT
}

function isImplicitTls(smtp) {
  return smtp.secure === undefined ? smtpPort(smtp) === 465 : !!smtp.secure
}

/** Where tokens come from, for display: oauth2.host, or the tenantId (and cloud) it is built from. */
function tokenSource(oauth2) {
  if (isSet(oauth2.host)) return String(oauth2.host)
  if (isSet(oauth2.tenantId)) return `tenant ${oauth2.tenantId} (${oauth2.cloud || 'global'} cloud)`
  return 'no token URL'
}

/** The tenant segment of a login.microsoftonline.com-style token URL, if there is one. */
function tenantOf(tokenUrl) {
  const match = /^https?:\/\/[^/]+\/([^/]*)\/oauth2\//.exec(String(tokenUrl || ''))
  return match ? decodeURIComponent(match[1]) : undefined
}

function loadTransportModule() {
  try {
    return require(path.join(PACKAGE_ROOT, 'transport.js'))
  } catch (err) {
    const wrapped = new Error(
      `cannot load smtp-oauth-transport's native addon for ${process.platform}-${process.arch}: ${err.message}\n` +
        'Reinstall the package so that npm installs the platform package (optional dependencies must not be disabled).',
    )
    wrapped.loadFailure = true
    throw wrapped
  }
}

// ---------------------------------------------------------------------------------------
// doctor: one function per step. Each returns { ok, finding, fix?, details?, notes? }:
// ok true (passed), false (failed) or null (not applicable: neither passed nor failed).

const pass = (finding, extra = {}) => ({ ok: true, finding, ...extra })
const fail = (finding, fix, extra = {}) => ({ ok: false, finding, fix, ...extra })
const notApplicable = (finding) => ({ ok: null, finding })

/** The field path of an ECONFIG message: 'mail.smtp.oauth2.clientSecret is missing' -> 'oauth2.clientSecret'. */
function configField(message) {
  const match = /\bmail\.smtp\.([A-Za-z0-9_.]+[A-Za-z0-9_])/.exec(message)
  return match ? match[1] : undefined
}

/** Seed env vars that are needed (not replaced by a flag) and unset. */
function unsetSeedVars(ctx) {
  const names = Object.entries(SEED_ENV)
    .filter(([field, name]) => !ctx.overridden.has(field) && !isSet(ctx.env[name]))
    .map(([, name]) => name)
  return [...new Set(names)]
}

function configSummary(ctx) {
  const { smtp } = ctx
  const oauth2 = smtp.oauth2 || {}
  const tlsConfig = smtp.tls || {}
  return {
    source: ctx.source,
    type: smtp.type,
    host: smtp.host,
    port: smtp.port,
    secure: isImplicitTls(smtp),
    user: smtp.auth && smtp.auth.user,
    from: ctx.from,
    clientId: oauth2.clientId,
    credential: isSet(oauth2.clientSecret)
      ? 'client secret (not shown)'
      : isSet(oauth2.privateKey)
        ? 'certificate (key not shown)'
        : 'none',
    tokenUrl: oauth2.host,
    tenantId: oauth2.tenantId,
    scope: oauth2.scope,
    tlsCa: tlsConfig.ca !== undefined,
    tlsServername: tlsConfig.servername,
    tlsRejectUnauthorized: tlsConfig.rejectUnauthorized !== false,
  }
}

function configErrorResult(ctx, err) {
  const field = configField(err.message)
  const envName = field && SEED_ENV[field]
  if (envName && ctx.fromEnv) {
    const others = unsetSeedVars(ctx).filter((name) => name !== envName)
    const also = others.length ? ` (also not set: ${others.join(', ')})` : ''
    return fail(
      `${envName} is not set${also}`,
      `export ${[envName, ...others].join(', ')} in the environment that runs TAS (cron jobs and systemd units do not read your shell profile); ${err.message}`,
    )
  }
  if (envName) {
    const hereSet = isSet(ctx.env[envName])
    return fail(
      err.message,
      hereSet
        ? `${envName} is set here, so this local.js does not read mail.smtp.${field} from it: set mail.smtp.${field} in ${ctx.source}`
        : `the product page's local.js reads mail.smtp.${field} from ${envName}, which is not set in this environment: export ${envName} (cron jobs do not read your shell profile)`,
    )
  }
  return fail(err.message, field ? `fix mail.smtp.${field} in ${ctx.source}` : `fix mail.smtp in ${ctx.source}`)
}

/** 1. The config is complete and well-formed: createTransport() accepts it. */
async function checkConfig(ctx) {
  if (ctx.loadError)
    return fail(ctx.loadError, 'fix the file so that node can require() it and it exports { mail: { smtp, from } }')
  const { smtp } = ctx
  rememberSecrets(ctx.redactor, smtp)
  const details = configSummary(ctx)
  if (!isOAuth2(smtp) && smtp.oauth2 && Object.keys(smtp.oauth2).length) {
    return fail(
      `mail.smtp.oauth2 is set but mail.smtp.type is ${smtp.type === undefined ? 'undefined' : JSON.stringify(smtp.type)}, not 'oauth2': the OAuth2 settings are ignored`,
      `add type: 'oauth2' to mail.smtp in ${ctx.source}`,
      { details },
    )
  }
  let createTransport
  try {
    createTransport = loadTransportModule().createTransport
  } catch (err) {
    return fail(err.message.split('\n')[0], err.message.split('\n').slice(1).join('\n'), { details })
  }
  try {
    ctx.transport = createTransport(smtp, isSet(ctx.from) ? { from: ctx.from } : undefined)
  } catch (err) {
    if (err.code !== 'ECONFIG') throw err
    return { ...configErrorResult(ctx, err), details }
  }
  const notes = []
  if (isOAuth2(smtp)) {
    notes.push(`token from ${tokenSource(smtp.oauth2)}, scope ${smtp.oauth2.scope || "(the cloud's default)"}`)
    const tenant = isSet(smtp.oauth2.host) ? tenantOf(smtp.oauth2.host) : String(smtp.oauth2.tenantId)
    if (tenant !== undefined && /^(undefined|null|)$/.test(tenant.trim())) {
      const name = SEED_ENV['oauth2.host']
      return fail(
        ctx.fromEnv ? `${name} is not set` : `the token URL has no tenant: ${tokenSource(smtp.oauth2)}`,
        `export ${name} (the Directory (tenant) ID) in the environment that runs TAS; the token URL is ${tokenUrlFor('<tenant id>')}`,
        { details },
      )
    }
    if (
      isSet(smtp.oauth2.scope) &&
      smtp.oauth2.scope !== EXCHANGE_SCOPE &&
      /office365\.com$/i.test(String(smtp.host))
    ) {
      notes.push(`note: oauth2.scope is ${smtp.oauth2.scope}; Exchange Online wants ${EXCHANGE_SCOPE}`)
    }
  }
  const auth = isOAuth2(smtp)
    ? `OAuth2 client ${smtp.oauth2.clientId}`
    : smtp.auth && smtp.auth.pass
      ? 'password'
      : 'no credentials'
  const tlsMode = isImplicitTls(smtp) ? 'implicit TLS' : 'STARTTLS'
  return pass(`${smtp.auth && smtp.auth.user} via ${smtp.host}:${smtpPort(smtp)} (${tlsMode}), ${auth}`, {
    details,
    notes,
  })
}

function aadstsCode(err) {
  return Array.isArray(err.oauthErrorCodes) && err.oauthErrorCodes.length
    ? `AADSTS${err.oauthErrorCodes[0]}`
    : undefined
}

function hostOf(url) {
  try {
    return new URL(url).host
  } catch {
    return url
  }
}

/** The error_description without its Trace ID / Correlation ID / Timestamp tail. */
function shortDescription(response) {
  return String(response || '')
    .split(/\s+Trace ID:/)[0]
    .trim()
}

/** 2. The token endpoint is reachable and issues a token. */
async function checkToken(ctx, progress) {
  if (!isOAuth2(ctx.smtp)) return notApplicable('not an OAuth2 configuration (mail.smtp.type is not oauth2)')
  const url = tokenSource(ctx.smtp.oauth2)
  progress(`requesting a token from ${url}`)
  try {
    const { accessToken, expiresAt } = await ctx.transport.getAccessToken()
    ctx.redactor.add(accessToken, ctx.smtp.auth.user)
    const minutes = Math.round((new Date(expiresAt).getTime() - Date.now()) / 60000)
    return pass(`token issued by ${hostOf(url)}, valid until ${new Date(expiresAt).toISOString()} (${minutes} min)`, {
      details: { tokenUrl: url, expiresAt: new Date(expiresAt).toISOString() },
    })
  } catch (err) {
    if (err.code !== 'EOAUTH2') throw err
    const details = {
      tokenUrl: url,
      oauthError: err.oauthError,
      oauthErrorCodes: err.oauthErrorCodes,
      statusCode: err.statusCode,
      response: err.response,
    }
    if (err.oauthError) {
      const code = aadstsCode(err)
      const description = shortDescription(err.response)
      const finding = [err.oauthError, code && !description.startsWith(code) ? code : '', description]
        .filter(Boolean)
        .join(' ')
      return fail(finding, err.hint || "see the AADSTS code in Entra ID's error reference", { details })
    }
    return fail(
      err.message,
      err.hint ||
        `check that this machine reaches ${hostOf(url)} over HTTPS (HTTPS_PROXY / NO_PROXY and oauth2.proxy are honoured)`,
      { details },
    )
  }
}

const CLAIM_FIXES = {
  AUDIENCE: `set mail.smtp.oauth2.scope to '${EXCHANGE_SCOPE}' (a Microsoft Graph token is refused by SMTP)`,
  ROLE_MISSING:
    "in the App registration: API permissions > Add a permission > APIs my organization uses > Office 365 Exchange Online > Application permissions > SMTP.SendAsApp, then 'Grant admin consent'",
  TENANT_MISMATCH:
    'use the Directory (tenant) ID of the tenant where the app is registered in the token URL (TAS_SMTP_OAUTH_TENANT_ID)',
  APP_MISMATCH: 'use the Application (client) ID of the app the secret belongs to (TAS_SMTP_OAUTH_CLIENT_ID)',
}

/** 3. The token's claims: audience Exchange, SMTP.SendAsApp, the configured tenant. */
async function checkClaims(ctx) {
  if (!isOAuth2(ctx.smtp)) return notApplicable('not an OAuth2 configuration')
  const report = await ctx.transport.inspectToken()
  const exp = report.exp ? new Date(report.exp).toISOString() : null
  const details = {
    isJwt: report.isJwt,
    aud: report.aud,
    roles: report.roles,
    tid: report.tid,
    appid: report.appid,
    exp,
    problems: report.problems,
  }
  if (!report.isJwt) return pass('the token is opaque (not a JWT): its claims cannot be read here', { details })
  const summary = `aud ${report.aud}, roles ${report.roles.length ? report.roles.join(', ') : 'none'}, tid ${report.tid}, appid ${report.appid}`
  if (report.problems.length) {
    const fixes = report.problems.map((p) => CLAIM_FIXES[p.code] || p.message)
    return fail(report.problems.map((p) => p.message).join('; '), [...new Set(fixes)].join('\n'), {
      details,
      notes: [summary],
    })
  }
  return pass(summary, { details })
}

// -- step 4 helpers: a minimal SMTP client for the handshake only -------------------------

function probeError(finding, fix) {
  return Object.assign(new Error(finding), { probe: { finding, fix } })
}

/** Reads SMTP replies (multi-line aware) from a socket; next() resolves the next reply. */
function replyReader(socket) {
  let buffer = ''
  let lines = []
  const replies = []
  let waiter = null
  let failure = null
  const settle = () => {
    if (!waiter || (!replies.length && !failure)) return
    const { resolve, reject, timer } = waiter
    waiter = null
    clearTimeout(timer)
    if (replies.length) resolve(replies.shift())
    else reject(failure)
  }
  const onData = (chunk) => {
    buffer += chunk.toString('latin1')
    let nl
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, '')
      buffer = buffer.slice(nl + 1)
      lines.push(line)
      if (!/^\d{3}-/.test(line)) {
        replies.push({
          code: Number(line.slice(0, 3)) || 0,
          lines: lines.map((l) => l.slice(4)),
          text: lines.join(' / '),
        })
        lines = []
      }
    }
    settle()
  }
  const onError = (err) => {
    failure = failure || err
    settle()
  }
  const onClose = () => onError(Object.assign(new Error('the server closed the connection'), { code: 'ECONNRESET' }))
  socket.on('data', onData)
  socket.on('error', onError)
  socket.on('close', onClose)
  return {
    next(ms, what) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = null
          reject(Object.assign(new Error(`no ${what} within ${ms} ms`), { code: 'ETIMEDOUT' }))
        }, ms)
        waiter = { resolve, reject, timer }
        settle()
      })
    },
    detach() {
      socket.off('data', onData)
      socket.off('error', onError)
      socket.off('close', onClose)
    },
  }
}

async function smtpCommand(socket, reader, line, ms) {
  socket.write(`${line}\r\n`)
  return reader.next(ms, `reply to ${line.split(' ')[0]}`)
}

function connectTcp(host, port, ms) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(Object.assign(new Error(`no TCP connection within ${ms} ms`), { code: 'ETIMEDOUT' }))
    }, ms)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** The roots Rust trusts: Mozilla's (as node bundles them), tls.ca, NODE_EXTRA_CA_CERTS. */
function trustedCas(configCa, env) {
  const extra = [].concat(configCa === undefined || configCa === null ? [] : configCa).map(String)
  if (env.NODE_EXTRA_CA_CERTS) {
    try {
      extra.push(fs.readFileSync(env.NODE_EXTRA_CA_CERTS, 'utf8'))
    } catch {
      // node itself warns about an unreadable NODE_EXTRA_CA_CERTS
    }
  }
  return [...tls.rootCertificates, ...extra]
}

/** TLS over `socket` (after STARTTLS) or a new connection (implicit TLS); never rejects on verification. */
function startTls(ctx, socket, ms) {
  const { smtp } = ctx
  const tlsConfig = smtp.tls || {}
  const servername = tlsConfig.servername || smtp.host
  const options = {
    ca: trustedCas(tlsConfig.ca, ctx.env),
    // Verification is judged after the handshake (certificateProblem), so that the
    // certificate can be shown even when it is not trusted.
    rejectUnauthorized: false,
    checkServerIdentity: (_host, cert) => tls.checkServerIdentity(servername, cert),
  }
  if (!net.isIP(servername)) options.servername = servername // SNI takes names only
  if (socket) options.socket = socket
  else Object.assign(options, { host: smtp.host, port: smtpPort(smtp) })
  return new Promise((resolve, reject) => {
    const tlsSocket = tls.connect(options)
    const timer = setTimeout(() => {
      tlsSocket.destroy()
      reject(Object.assign(new Error(`no TLS handshake within ${ms} ms`), { code: 'ETIMEDOUT' }))
    }, ms)
    tlsSocket.once('secureConnect', () => {
      clearTimeout(timer)
      tlsSocket.removeAllListeners('error')
      resolve({ tlsSocket, servername })
    })
    tlsSocket.once('error', (err) => {
      clearTimeout(timer)
      tlsSocket.destroy()
      reject(err)
    })
  })
}

function distinguishedName(entries) {
  if (!entries || typeof entries !== 'object') return ''
  return Object.entries(entries)
    .map(([key, value]) => `${key}=${[].concat(value).join('+')}`)
    .join(', ')
}

const CERT_ERRORS = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'signed by a CA this machine does not trust',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'signed by a CA this machine does not trust',
  UNABLE_TO_GET_ISSUER_CERT: 'signed by a CA this machine does not trust',
  SELF_SIGNED_CERT_IN_CHAIN: 'its chain ends in a CA this machine does not trust',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed',
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: "not valid yet (check this machine's clock)",
  ERR_TLS_CERT_ALTNAME_INVALID: 'issued for another name',
}

/** What the certificate says and whether it is trusted for `servername`. */
function certificateReport(tlsSocket, servername) {
  const cert = tlsSocket.getPeerCertificate(false) || {}
  const details = {
    protocol: tlsSocket.getProtocol(),
    cipher: (tlsSocket.getCipher() || {}).name,
    subject: distinguishedName(cert.subject),
    issuer: distinguishedName(cert.issuer),
    subjectAltName: cert.subjectaltname,
    validFrom: cert.valid_from ? new Date(cert.valid_from).toISOString() : undefined,
    validTo: cert.valid_to ? new Date(cert.valid_to).toISOString() : undefined,
    fingerprint256: cert.fingerprint256,
    verified: tlsSocket.authorized,
    verifyError: tlsSocket.authorized ? undefined : String(tlsSocket.authorizationError),
    servername,
  }
  return details
}

function certificateProblem(ctx, cert) {
  if (cert.verified) return null
  const why = CERT_ERRORS[cert.verifyError] || cert.verifyError
  const finding = `the certificate of ${ctx.smtp.host} is not trusted: ${why} (${cert.verifyError}); subject ${cert.subject}, issuer ${cert.issuer}`
  if (cert.verifyError === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return {
      finding,
      fix: `the certificate is for ${cert.subjectAltName || cert.subject}, not ${cert.servername}: connect to the name on the certificate (mail.smtp.host), or set mail.smtp.tls.servername to it`,
    }
  }
  if (/EXPIRED|NOT_YET_VALID/.test(cert.verifyError)) {
    return {
      finding,
      fix: `the server's certificate is valid ${cert.validFrom} to ${cert.validTo}: renew it, or fix this machine's clock`,
    }
  }
  return {
    finding,
    fix:
      `the issuer "${cert.issuer}" is not among the trusted roots: if a TLS-inspecting proxy or a private relay sits in between, add its CA ` +
      'to mail.smtp.tls.ca (PEM) or NODE_EXTRA_CA_CERTS; otherwise something is intercepting the connection',
  }
}

/** EHLO keywords: Map of 'STARTTLS' -> [], 'AUTH' -> ['LOGIN', 'XOAUTH2'], ... */
function ehloExtensions(reply) {
  const map = new Map()
  for (const line of reply.lines.slice(1)) {
    const [keyword, ...params] = line.trim().split(/\s+/)
    if (keyword)
      map.set(
        keyword.toUpperCase(),
        params.map((p) => p.toUpperCase()),
      )
  }
  return map
}

function tcpFailure(err, host, port) {
  const where = `${host}:${port}`
  if (err.code === 'ECONNREFUSED') {
    return probeError(
      `${where} refused the connection`,
      `nothing listens on ${where}: check mail.smtp.host and mail.smtp.port (Exchange Online: ${DEFAULT_SMTP_HOST}:587)`,
    )
  }
  if (err.code === 'ETIMEDOUT') {
    return probeError(
      `no connection to ${where}: ${err.message}`,
      `a firewall drops outbound port ${port} (many hosting providers block SMTP ports): open it or ask the provider`,
    )
  }
  return probeError(
    `cannot connect to ${where}: ${err.code || err.message}`,
    'check the network route to the SMTP server',
  )
}

/** DNS, TCP, greeting, EHLO, STARTTLS (or implicit TLS), certificate, EHLO again, QUIT. */
async function probeSmtp(ctx, progress, details) {
  const { smtp } = ctx
  const host = smtp.host
  const port = smtpPort(smtp)
  const secure = isImplicitTls(smtp)
  const connectMs = Math.min(Number(smtp.connectionTimeout) || 30000, 30000)
  const replyMs = Math.min(Number(smtp.greetingTimeout) || 30000, Number(smtp.socketTimeout) || 30000, 30000)
  const name = smtp.name || os.hostname()
  Object.assign(details, { host, port, secure })

  if (!net.isIP(host)) {
    progress(`resolving ${host}`)
    try {
      details.addresses = (await dns.lookup(host, { all: true })).map((a) => a.address)
    } catch (err) {
      throw probeError(
        `${host} does not resolve (${err.code})`,
        `check mail.smtp.host (Exchange Online: ${DEFAULT_SMTP_HOST}) and this machine's DNS`,
      )
    }
  }

  progress(`connecting to ${host}:${port}`)
  let raw
  try {
    raw = await connectTcp(host, port, connectMs)
  } catch (err) {
    throw tcpFailure(err, host, port)
  }
  const sockets = [raw]
  try {
    let socket = raw
    if (secure) {
      progress(`TLS handshake with ${host}:${port}`)
      raw.destroy()
      sockets.length = 0
      const { tlsSocket, servername } = await startTls(ctx, null, connectMs).catch((err) => {
        throw probeError(
          `TLS handshake with ${host}:${port} failed: ${err.code || err.message}`,
          'with secure: true the port must speak TLS from the first byte (465); for port 587 leave secure unset',
        )
      })
      sockets.push(tlsSocket)
      socket = tlsSocket
      details.certificate = certificateReport(tlsSocket, servername)
    }
    let reader = replyReader(socket)
    progress(`waiting for the greeting of ${host}`)
    const greeting = await reader.next(replyMs, 'greeting')
    details.greeting = greeting.text
    if (greeting.code !== 220)
      throw probeError(
        `${host} greeted with ${greeting.text}`,
        'the server refuses connections from this machine: check its address restrictions',
      )
    let ehlo = await smtpCommand(socket, reader, `EHLO ${name}`, replyMs)
    if (ehlo.code !== 250)
      throw probeError(`EHLO refused: ${ehlo.text}`, 'the server does not speak ESMTP on this port')
    let extensions = ehloExtensions(ehlo)

    if (!secure) {
      details.starttls = extensions.has('STARTTLS')
      if (!details.starttls) {
        throw probeError(
          `${host}:${port} does not offer STARTTLS (EHLO: ${ehlo.lines.slice(1).join(', ') || 'no extensions'})`,
          "credentials are never sent without TLS: use the server's submission port with STARTTLS (Exchange Online: 587), or port 465 with secure: true; a proxy or antivirus that strips STARTTLS must let it through",
        )
      }
      const answer = await smtpCommand(socket, reader, 'STARTTLS', replyMs)
      if (answer.code !== 220)
        throw probeError(
          `STARTTLS refused: ${answer.text}`,
          'the server offers STARTTLS but refuses it: ask its administrator',
        )
      reader.detach()
      progress(`TLS handshake with ${host}`)
      const { tlsSocket, servername } = await startTls(ctx, raw, connectMs).catch((err) => {
        throw probeError(
          `TLS handshake with ${host} failed: ${err.code || err.message}`,
          'the server and this machine share no TLS version or cipher (TLS 1.2+ is required)',
        )
      })
      sockets.push(tlsSocket)
      socket = tlsSocket
      details.certificate = certificateReport(tlsSocket, servername)
      reader = replyReader(socket)
    }

    const problem = certificateProblem(ctx, details.certificate)
    if (problem && (smtp.tls || {}).rejectUnauthorized !== false) throw probeError(problem.finding, problem.fix)

    if (!secure) {
      ehlo = await smtpCommand(socket, reader, `EHLO ${name}`, replyMs)
      extensions = ehloExtensions(ehlo)
    }
    details.authMechanisms = extensions.get('AUTH') || []
    if (isOAuth2(smtp) && !details.authMechanisms.includes('XOAUTH2')) {
      throw probeError(
        `${host} does not offer AUTH XOAUTH2 (offers: ${details.authMechanisms.join(' ') || 'no AUTH'})`,
        'use a server that supports OAuth2 (Exchange Online: smtp.office365.com:587)',
      )
    }
    await smtpCommand(socket, reader, 'QUIT', 2000).catch(() => {})
  } finally {
    // The TLS socket first: destroying the TCP socket under a live TLS socket makes node
    // read through a freed BIO (a segfault seen with node 20 after a failed verification).
    for (const socket of sockets.reverse()) socket.destroy()
  }
}

/** 4. DNS, TCP, greeting, EHLO, STARTTLS, TLS handshake and certificate, done here in JS. */
async function checkSmtp(ctx, progress) {
  const details = {}
  try {
    await probeSmtp(ctx, progress, details)
  } catch (err) {
    if (!err.probe)
      throw probeError(
        `${err.code || 'error'}: ${err.message}`,
        'the server did not behave like an SMTP submission server',
      )
    return fail(err.probe.finding, err.probe.fix, { details, notes: certificateNotes(details.certificate) })
  }
  const cert = details.certificate
  const tlsMode = details.secure ? 'implicit TLS' : 'STARTTLS'
  const verified = cert.verified ? 'certificate verified' : 'certificate NOT verified (tls.rejectUnauthorized is false)'
  const via = details.addresses ? ` (${details.addresses.join(', ')})` : ''
  return pass(
    `${details.host}:${details.port}${via} greets, ${tlsMode} ${cert.protocol}, ${verified}, AUTH ${details.authMechanisms.join(' ')}`,
    {
      details,
      notes: certificateNotes(cert),
    },
  )
}

function certificateNotes(cert) {
  if (!cert) return []
  const days = cert.validTo ? Math.floor((new Date(cert.validTo).getTime() - Date.now()) / 86400000) : undefined
  return [
    `certificate subject ${cert.subject}${cert.subjectAltName ? ` (${cert.subjectAltName})` : ''}`,
    `issuer ${cert.issuer}`,
    `valid until ${cert.validTo}${days !== undefined ? ` (${days} days)` : ''}`,
  ]
}

function enhancedStatus(response) {
  const match = /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(String(response || ''))
  return match ? match[1] : undefined
}

function exchangeSetupFix(ctx) {
  const clientId = (ctx.smtp.oauth2 && ctx.smtp.oauth2.clientId) || '<ENTRA_APPLICATION_ID>'
  const user = (ctx.smtp.auth && ctx.smtp.auth.user) || '<SENDING_USER_EMAIL>'
  const first = ctx.passed.has('claims')
    ? 'Exchange refused a token whose claims are right (step 3), so Exchange does not know the app or the app may not use the mailbox.'
    : 'Exchange refused the token.'
  return [
    first,
    'Register the app in Exchange and let it use the mailbox (PowerShell, as an Exchange admin):',
    '  Import-Module ExchangeOnlineManagement',
    '  Connect-ExchangeOnline -UserPrincipalName "<EXCHANGE_ADMIN_ACCOUNT>"',
    `  New-ServicePrincipal -AppId "${clientId}" -ServiceId "${OBJECT_ID}" -DisplayName "TAS SMTP OAuth"`,
    `  Add-MailboxPermission -Identity "${user}" -User "${OBJECT_ID}" -AccessRights FullAccess`,
    `${OBJECT_ID_NOTE}.`,
    `Check what exists: Get-ServicePrincipal | Where-Object AppId -eq "${clientId}"; Get-MailboxPermission -Identity "${user}".`,
    `Also check that auth.user (${user}) is the mailbox the permission was given on.`,
  ].join('\n')
}

function smtpAuthDisabledFix(ctx) {
  const user = (ctx.smtp.auth && ctx.smtp.auth.user) || '<SENDING_USER_EMAIL>'
  return [
    'SMTP AUTH is disabled for the mailbox or the whole tenant (security defaults also disable it). Enable it for this mailbox:',
    `  Set-CASMailbox -Identity "${user}" -SmtpClientAuthenticationDisabled $false`,
    "or for the tenant: Set-TransportConfig -SmtpClientAuthenticationDisabled $false (the mailbox setting wins over the tenant's).",
  ].join('\n')
}

/** 5. AUTH XOAUTH2 with the real transport: verify(). */
async function checkAuth(ctx, progress) {
  progress(`authenticating to ${ctx.smtp.host} as ${ctx.smtp.auth && ctx.smtp.auth.user}`)
  try {
    await ctx.transport.verify()
    const mechanism = isOAuth2(ctx.smtp) ? 'XOAUTH2' : 'with the password'
    return pass(`${ctx.smtp.host} accepted AUTH ${mechanism} for ${ctx.smtp.auth && ctx.smtp.auth.user}`)
  } catch (err) {
    const details = { code: err.code, responseCode: err.responseCode, response: err.response, command: err.command }
    if (err.code === 'EAUTH') {
      const status = enhancedStatus(err.response)
      if (status === '5.7.139')
        return fail(`SMTP AUTH is disabled: ${err.response}`, smtpAuthDisabledFix(ctx), { details })
      if (status === '5.7.3' || (err.responseCode === 535 && isOAuth2(ctx.smtp)))
        return fail(`the token was refused: ${err.response}`, exchangeSetupFix(ctx), { details })
    }
    return fail(`${err.code}: ${err.message}`, err.hint || "see the error code in the README's troubleshooting table", {
      details,
    })
  }
}

function sendAsFix(ctx, from) {
  const user = ctx.smtp.auth && ctx.smtp.auth.user
  return [
    `mail.from (${from}) differs from the authenticated mailbox (${user}). Either send as the mailbox: set mail.from to ${user} (local.js or the TAS administration),`,
    'or let the mailbox send as that address:',
    `  Add-RecipientPermission -Identity "${from}" -Trustee "${user}" -AccessRights SendAs`,
  ].join('\n')
}

/** 6. Optional: a real message to --send-to. */
async function checkSend(ctx, progress) {
  if (!ctx.sendTo) return notApplicable('no test message (give --send-to ADDRESS to send one)')
  const from = isSet(ctx.from) ? ctx.from : ctx.smtp.auth && ctx.smtp.auth.user
  progress(`sending a test message from ${from} to ${ctx.sendTo}`)
  try {
    const info = await ctx.transport.sendMail({
      from,
      to: ctx.sendTo,
      subject: 'smtp-oauth-transport doctor test',
      text: `This message was sent by "smtp-oauth-transport doctor" on ${os.hostname()} at ${new Date().toISOString()} to check that ${from} can send mail.`,
    })
    const details = {
      messageId: info.messageId,
      accepted: info.accepted,
      rejected: info.rejected,
      response: info.response,
    }
    if (info.rejected.length)
      return fail(`refused recipients: ${info.rejected.join(', ')}`, 'check the recipient addresses', { details })
    return pass(`sent from ${from} to ${info.accepted.join(', ')}: ${info.response}`, { details })
  } catch (err) {
    const details = { code: err.code, responseCode: err.responseCode, response: err.response, command: err.command }
    if (enhancedStatus(err.response) === '5.7.60' || /SendAsDenied/i.test(String(err.response) + err.message)) {
      return fail(`the server refused to send as ${from}: ${err.response}`, sendAsFix(ctx, from), { details })
    }
    return fail(`${err.code}: ${err.message}`, err.hint || "see the error code in the README's troubleshooting table", {
      details,
    })
  }
}

const STEPS = [
  { name: 'config', title: 'Configuration', run: checkConfig },
  { name: 'token', title: 'Token from the token endpoint', run: checkToken },
  { name: 'claims', title: 'Token claims', run: checkClaims },
  { name: 'smtp', title: 'SMTP server, STARTTLS and certificate', run: checkSmtp },
  { name: 'auth', title: 'AUTH XOAUTH2', run: checkAuth },
  { name: 'send', title: 'Test message', run: checkSend },
]

function printStep(output, number, step, result) {
  const mark = result.status === 'pass' ? '✔' : result.status === 'fail' ? '✘' : '–'
  output.line(`${mark} ${number}. ${step.title}: ${result.finding}`)
  for (const note of result.notes || []) output.line(`     ${note}`)
  if (result.fix) {
    const [first, ...rest] = String(result.fix).split('\n')
    output.line(`     fix: ${first}`)
    for (const line of rest) output.line(`          ${line}`)
  }
}

async function runStep(ctx, step, output) {
  try {
    return await step.run(ctx, (text) => output.progress(text))
  } catch (err) {
    if (err.probe) return fail(err.probe.finding, err.probe.fix)
    return fail(
      `unexpected error: ${err.code ? `${err.code} ` : ''}${err.message}`,
      err.hint || 'report this with the output of --json',
    )
  } finally {
    output.stopProgress()
  }
}

async function doctor(values, env, output) {
  const base = loadConfig(values, env)
  const ctx = { ...base, env, sendTo: values['send-to'], redactor: output.redactor, passed: new Set(), transport: null }
  output.line(`smtp-oauth-transport doctor ${VERSION}, configuration from ${ctx.source}`)
  output.line()

  const steps = []
  let failedAt = null
  for (const [index, step] of STEPS.entries()) {
    let result
    if (failedAt !== null) {
      result = { ok: null, finding: `skipped (step ${failedAt} failed)` }
    } else {
      result = await runStep(ctx, step, output)
      if (result.ok === false) failedAt = index + 1
      if (result.ok === true) ctx.passed.add(step.name)
    }
    result.status = result.ok === true ? 'pass' : result.ok === false ? 'fail' : 'skip'
    printStep(output, index + 1, step, result)
    steps.push({
      step: index + 1,
      name: step.name,
      title: step.title,
      ok: result.ok,
      status: result.status,
      finding: result.finding,
      fix: result.fix || null,
      details: result.details || null,
    })
  }
  if (ctx.transport) await ctx.transport.close()

  const ok = failedAt === null
  output.line()
  output.line(ok ? 'Everything checked works.' : `Step ${failedAt} failed: fix it and run the doctor again.`)
  if (output.json)
    output.printJson({ tool: 'smtp-oauth-transport doctor', version: VERSION, source: ctx.source, ok, steps })
  return ok ? 0 : 1
}

// ---------------------------------------------------------------------------------------
// send

async function send(values, env, output) {
  const to = (values.to || [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean)
  if (!to.length) throw new UsageError('send needs --to ADDRESS')
  const ctx = loadConfig(values, env)
  if (ctx.loadError) throw new UsageError(ctx.loadError)
  rememberSecrets(output.redactor, ctx.smtp)
  const { createTransport } = loadTransportModule()
  let transport
  try {
    transport = createTransport(ctx.smtp, isSet(ctx.from) ? { from: ctx.from } : undefined)
    const message = {
      to,
      subject: values.subject !== undefined ? values.subject : 'smtp-oauth-transport test',
      text: values.text,
      html: values.html,
    }
    if (message.text === undefined && message.html === undefined)
      message.text = `Sent by "smtp-oauth-transport send" on ${os.hostname()}.`
    output.progress(`sending to ${to.join(', ')} via ${ctx.smtp.host}`)
    const info = await transport.sendMail(message)
    output.stopProgress()
    const summary = {
      messageId: info.messageId,
      accepted: info.accepted,
      rejected: info.rejected,
      response: info.response,
    }
    if (output.json) output.printJson({ ok: true, info: summary })
    else {
      output.line(`✔ sent: ${info.response}`)
      for (const [key, value] of Object.entries(summary))
        output.line(`  ${key}: ${Array.isArray(value) ? value.join(', ') || '-' : value}`)
    }
    return info.rejected.length ? 1 : 0
  } catch (err) {
    output.stopProgress()
    const error = {
      code: err.code,
      message: err.message,
      responseCode: err.responseCode,
      response: err.response,
      hint: err.hint,
    }
    if (output.json) output.printJson({ ok: false, error })
    else {
      output.line(`✘ ${err.code || 'error'}: ${err.message}`)
      if (err.hint) output.line(`  fix: ${err.hint}`)
      if (err.code === 'ECONFIG')
        output.line('  run "smtp-oauth-transport doctor" with the same options for the whole chain')
    }
    return 1
  } finally {
    if (transport) await transport.close()
  }
}

// ---------------------------------------------------------------------------------------

async function main(argv, env) {
  const redactor = new Redactor()
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (err) {
    process.stderr.write(`${redactor.redact(err.message)}\nRun "smtp-oauth-transport --help" for the options.\n`)
    return 2
  }
  const { values, positionals } = parsed
  if (values.help) {
    process.stdout.write(USAGE)
    return 0
  }
  if (values.version) {
    process.stdout.write(`${VERSION}\n`)
    return 0
  }
  const [command, ...extra] = positionals
  const output = new Output({ json: !!values.json, redactor })
  try {
    if (extra.length) throw new UsageError(`unexpected argument: ${extra[0]}`)
    if (command === 'doctor') return await doctor(values, env, output)
    if (command === 'send') return await send(values, env, output)
    throw new UsageError(command ? `unknown command: ${command}` : 'give a command: doctor or send')
  } catch (err) {
    output.stopProgress()
    if (err instanceof UsageError) {
      output.error(`${err.message}\nRun "smtp-oauth-transport --help" for the options.`)
      return 2
    }
    output.error(err.loadFailure ? err.message : `unexpected error: ${err.stack || err.message}`)
    return 1
  }
}

if (require.main === module) {
  main(process.argv.slice(2), process.env).then((code) => {
    process.exitCode = code
  })
}

module.exports = { main }
