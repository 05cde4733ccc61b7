'use strict'
// send: one message with the same configuration; prints `info`, or the error with its hint.

const os = require('node:os')
const { UsageError } = require('./args.js')
const { isSet, loadConfig, secretsOf } = require('./config-sources.js')

async function send(values, env, output, { createTransport }) {
  const to = (values.to || [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean)
  if (!to.length) throw new UsageError('send needs --to ADDRESS')
  const ctx = loadConfig(values, env)
  if (ctx.loadError) throw new UsageError(ctx.loadError)
  for (const secret of secretsOf(ctx.smtp)) output.redactor.add(secret)
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
    const summary = { messageId: info.messageId, accepted: info.accepted, rejected: info.rejected, response: info.response }
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
      hintId: err.hintId,
      hintParams: err.hintParams,
    }
    if (output.json) output.printJson({ ok: false, error })
    else {
      output.line(`✘ ${err.code || 'error'}: ${err.message}`)
      if (err.hint) output.block('fix', err.hint)
      if (err.code === 'ECONFIG') output.line('  run "smtp-oauth-transport doctor" with the same options for the whole chain')
    }
    return 1
  } finally {
    if (transport) await transport.close()
  }
}

module.exports = { send }
