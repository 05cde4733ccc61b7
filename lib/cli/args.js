'use strict'
// The command line's words: options, usage text, and what a usage error is.

const { parseArgs } = require('node:util')

class UsageError extends Error {}

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
  rbac: { type: 'boolean' },
  'send-to': { type: 'string' },
  to: { type: 'string', multiple: true },
  subject: { type: 'string' },
  text: { type: 'string' },
  html: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
}

function usage(version) {
  return `smtp-oauth-transport ${version}

Usage:
  smtp-oauth-transport doctor (--config ./local.js | --env) [options] [--send-to ADDRESS] [--json]
  smtp-oauth-transport send   (--config ./local.js | --env) [options] --to ADDRESS [--subject S] [--text T] [--html H] [--json]
  smtp-oauth-transport --help | --version

Where the configuration comes from:
  --config FILE        a TAS local.js: loaded with require(), mail.smtp and mail.from are used
  --env                the product page's configuration from TAS_SMTP_AUTH_USER, TAS_SMTP_OAUTH_TENANT_ID,
                       TAS_SMTP_OAUTH_CLIENT_ID, TAS_SMTP_OAUTH_CLIENT_SECRET (and optional TAS_SMTP_HOST,
                       TAS_SMTP_PORT; default smtp.office365.com:587)

Options that override one field (secrets cannot be given on the command line):
  --host HOST          mail.smtp.host                --port PORT        mail.smtp.port
  --secure             mail.smtp.secure (implicit TLS, port 465)
  --user MAILBOX       mail.smtp.auth.user           --from ADDRESS     mail.from
  --client-id ID       mail.smtp.oauth2.clientId     --scope SCOPE      mail.smtp.oauth2.scope
  --tenant TENANT      mail.smtp.oauth2.tenantId (the token URL is built from it)
  --token-url URL      mail.smtp.oauth2.host (the whole token URL)
  --ca FILE            mail.smtp.tls.ca (PEM file of a CA to trust besides the usual roots)
  --servername NAME    mail.smtp.tls.servername (the name the SMTP certificate must carry)
  --rbac               mail.smtp.oauth2.rbac: Exchange RBAC for Applications grants the mailbox,
                       so the token needs no SMTP.SendAsApp role

doctor:
  --send-to ADDRESS    also send a test message to ADDRESS (step 6)
  --json               print one JSON object instead of text
  Exit code 0 when every step passed, 1 when one failed, 2 for a usage error.

send:
  --to ADDRESS (repeatable or comma-separated), --subject S, --text T, --html H, --json
`
}

/** `{ values, positionals }`, or throws UsageError. */
function parse(argv) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (err) {
    throw new UsageError(err.message)
  }
}

module.exports = { UsageError, parse, usage }
