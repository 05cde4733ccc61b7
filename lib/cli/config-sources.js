'use strict'
// Where the configuration comes from: a TAS local.js (--config), the product page's
// environment variables (--env), and flags that replace one field each. This file knows the
// sources, not the rules: what a field must be is the transport's to say (ECONFIG).

const fs = require('node:fs')
const path = require('node:path')
const { UsageError } = require('./args.js')

// The product page's environment variables, by the field they fill.
const SEED_ENV = {
  'auth.user': 'TAS_SMTP_AUTH_USER',
  'oauth2.host': 'TAS_SMTP_OAUTH_TENANT_ID',
  'oauth2.tenantId': 'TAS_SMTP_OAUTH_TENANT_ID',
  'oauth2.clientId': 'TAS_SMTP_OAUTH_CLIENT_ID',
  'oauth2.clientSecret': 'TAS_SMTP_OAUTH_CLIENT_SECRET',
}

const isSet = (value) => value !== undefined && value !== null && value !== ''

/** The product page's mail config, built from the environment as its local.js would. */
function configFromEnv(env) {
  return {
    smtp: {
      type: 'oauth2',
      host: env.TAS_SMTP_HOST || 'smtp.office365.com',
      port: env.TAS_SMTP_PORT || 587,
      auth: { user: env.TAS_SMTP_AUTH_USER },
      oauth2: {
        tenantId: env.TAS_SMTP_OAUTH_TENANT_ID || undefined,
        clientId: env.TAS_SMTP_OAUTH_CLIENT_ID,
        clientSecret: env.TAS_SMTP_OAUTH_CLIENT_SECRET,
        // as the product page's local.js has it
        scope: 'https://outlook.office365.com/.default',
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

/** A copy of `smtp` with the single-field flags applied (the original is untouched). */
function applyOverrides(smtp, values) {
  const out = { ...smtp, auth: { ...smtp.auth }, oauth2: { ...smtp.oauth2 }, tls: { ...smtp.tls } }
  if (values.host !== undefined) out.host = values.host
  if (values.port !== undefined) out.port = /^\d+$/.test(values.port) ? Number(values.port) : values.port
  if (values.secure) out.secure = true
  if (values.user !== undefined) out.auth.user = values.user
  if (values['client-id'] !== undefined) out.oauth2.clientId = values['client-id']
  if (values.scope !== undefined) out.oauth2.scope = values.scope
  if (values.tenant !== undefined) {
    out.oauth2.tenantId = values.tenant
    delete out.oauth2.host
  }
  if (values['token-url'] !== undefined) out.oauth2.host = values['token-url']
  if (values.rbac) out.oauth2.rbac = true
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
 * The configuration and where it came from.
 * @returns {{ source: string, fromEnv: boolean, env: object, smtp?: object, from?: string, loadError?: string, overridden: Set<string> }}
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
  const ctx = { source, fromEnv: !!values.env, env, overridden }
  if (base.loadError) return { ...ctx, fromEnv: false, loadError: base.loadError }
  return {
    ...ctx,
    smtp: applyOverrides(base.smtp, values),
    from: values.from !== undefined ? values.from : base.from,
  }
}

/** The secrets a config holds, for the redactor. */
function secretsOf(smtp) {
  const oauth2 = smtp.oauth2 || {}
  return [oauth2.clientSecret, oauth2.privateKey && String(oauth2.privateKey), smtp.auth && smtp.auth.pass]
}

/** The field path of an ECONFIG message: 'mail.smtp.oauth2.clientSecret is missing' -> 'oauth2.clientSecret'. */
function configField(message) {
  const match = /\bmail\.smtp\.([A-Za-z0-9_.]+[A-Za-z0-9_])/.exec(message)
  return match ? match[1] : undefined
}

/**
 * What a refused configuration means for its source: `{ finding, fix }`. The transport's own
 * hint wins; else a field the product page fills from an environment variable is named by it.
 */
function explainConfigError(ctx, err) {
  const field = configField(err.message)
  const envName = field && SEED_ENV[field]
  if (envName && ctx.fromEnv) {
    const others = [...new Set(Object.entries(SEED_ENV)
      .filter(([f, name]) => !ctx.overridden.has(f) && !isSet(ctx.env[name]) && name !== envName)
      .map(([, name]) => name))]
    const also = others.length ? ` (also not set: ${others.join(', ')})` : ''
    return {
      finding: `${envName} is not set${also}`,
      fix: `export ${[envName, ...others].join(', ')} in the environment that runs TAS (cron jobs and systemd units do not read your shell profile); ${err.message}`,
    }
  }
  if (err.hint) return { finding: err.message, fix: err.hint }
  if (envName) {
    const fix = isSet(ctx.env[envName])
      ? `${envName} is set here, so this local.js does not read mail.smtp.${field} from it: set mail.smtp.${field} in ${ctx.source}`
      : `the product page's local.js reads mail.smtp.${field} from ${envName}, which is not set in this environment: export ${envName} (cron jobs do not read your shell profile)`
    return { finding: err.message, fix }
  }
  return { finding: err.message, fix: field ? `fix mail.smtp.${field} in ${ctx.source}` : `fix mail.smtp in ${ctx.source}` }
}

module.exports = { explainConfigError, isSet, loadConfig, secretsOf }
