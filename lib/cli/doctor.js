'use strict'
// doctor: asks the transport to walk its chain (transport.probe(), the core's own code) and
// presents what each step found. The rules, the findings and the fixes are the core's; this
// file only adds what a certificate says (parsed here for display) and prints.

const { X509Certificate } = require('node:crypto')
const { explainConfigError, isSet, loadConfig, secretsOf } = require('./config-sources.js')

// Names and titles of the steps, for a configuration the transport could not even take.
const STEPS = [
  ['config', 'Configuration'],
  ['token', 'Token from the token endpoint'],
  ['claims', 'Token claims'],
  ['smtp', 'SMTP server, STARTTLS and certificate'],
  ['auth', 'AUTH'],
  ['send', 'Test message'],
]

/** The report of a walk that stopped at the configuration. */
function configFailure(finding, fix, hint = null) {
  return {
    ok: false,
    steps: STEPS.map(([name, title], index) => ({
      step: index + 1,
      name,
      title,
      ok: index === 0 ? false : null,
      status: index === 0 ? 'fail' : 'skip',
      finding: index === 0 ? finding : 'skipped (step 1 failed)',
      fix: index === 0 ? fix : null,
      hint: index === 0 ? hint : null,
      warnings: [],
      details: null,
      elapsedMs: 0,
    })),
  }
}

/** Subject, issuer, names and validity of a DER certificate (base64), for display. */
function describeCertificate(base64) {
  try {
    const cert = new X509Certificate(Buffer.from(base64, 'base64'))
    const oneLine = (name) => name.split('\n').filter(Boolean).join(', ')
    return {
      subject: oneLine(cert.subject),
      issuer: oneLine(cert.issuer),
      subjectAltName: cert.subjectAltName,
      validFrom: new Date(cert.validFrom).toISOString(),
      validTo: new Date(cert.validTo).toISOString(),
      fingerprint256: cert.fingerprint256,
    }
  } catch (err) {
    return { unreadable: err.message }
  }
}

/** The lines printed under a step: the certificate, the configured certificate's thumbprints. */
function notesFor(step) {
  const details = step.details || {}
  const notes = []
  const cert = details.certificate && details.certificate.leaf
  if (cert && cert.subject) {
    const days = Math.floor((Date.parse(cert.validTo) - Date.now()) / 86400000)
    notes.push(`certificate subject ${cert.subject}${cert.subjectAltName ? ` (${cert.subjectAltName})` : ''}`)
    notes.push(`issuer ${cert.issuer}`)
    notes.push(`valid until ${cert.validTo} (${days} days)`)
  }
  const assertion = details.credential && details.credential.assertion
  if (step.name === 'token' && assertion) {
    notes.push(`assertion sent (decoded, not shown): iss ${assertion.iss}, sub ${assertion.sub}, aud ${assertion.aud}, exp ${assertion.exp}`)
  }
  if (details.thumbprints) {
    notes.push(`configured certificate thumbprints: SHA-1 ${details.thumbprints.sha1}, SHA-256 ${details.thumbprints.sha256}`)
  }
  return notes
}

/** Adds the parsed certificate to the SMTP step's details (the chain stays as it came). */
function withCertificate(step) {
  const certificate = step.details && step.details.certificate
  if (!certificate || !Array.isArray(certificate.chain) || !certificate.chain.length) return step
  const leaf = describeCertificate(certificate.chain[0])
  return {
    ...step,
    details: { ...step.details, certificate: { ...certificate, ...leaf, leaf, issuers: certificate.chain.slice(1).map(describeCertificate) } },
  }
}

async function doctor(values, env, output, { createTransport, version }) {
  const ctx = loadConfig(values, env)
  output.line(`smtp-oauth-transport doctor ${version}, configuration from ${ctx.source}`)
  output.line()
  let report
  if (ctx.loadError) {
    report = configFailure(ctx.loadError, 'fix the file so that node can require() it and it exports { mail: { smtp, from } }')
  } else {
    for (const secret of secretsOf(ctx.smtp)) output.redactor.add(secret)
    let transport
    try {
      transport = createTransport(ctx.smtp, isSet(ctx.from) ? { from: ctx.from } : undefined)
    } catch (err) {
      if (err.code !== 'ECONFIG') throw err
      const { finding, fix } = explainConfigError(ctx, err)
      const hint = err.hintId ? { id: err.hintId, params: err.hintParams, text: err.hint } : null
      report = configFailure(finding, fix, hint)
    }
    if (transport) {
      const route = ctx.smtp.api === 'graph' ? 'the mailbox in Microsoft Graph' : `${ctx.smtp.host}, AUTH`
      output.progress(`walking the chain: token, claims, ${route}${values['send-to'] ? ', test message' : ''}`)
      try {
        report = await transport.probe({ sendTo: values['send-to'], from: isSet(ctx.from) ? ctx.from : undefined })
      } finally {
        output.stopProgress()
        await transport.close()
      }
    }
  }

  const steps = report.steps.map(withCertificate)
  for (const step of steps) {
    let shown = step
    // A refused certificate is named by who issued it, next to the transport's reason.
    const cert = step.details && step.details.certificate && step.details.certificate.leaf
    if (step.status === 'fail' && cert && cert.issuer) {
      shown = { ...step, finding: `${step.finding}; certificate subject ${cert.subject}, issuer ${cert.issuer}` }
    }
    output.step(shown, notesFor(step))
  }
  const failed = steps.find((step) => step.status === 'fail')
  output.line()
  output.line(failed ? `Step ${failed.step} failed: fix it and run the doctor again.` : 'Everything checked works.')
  if (output.json) output.printJson({ tool: 'smtp-oauth-transport doctor', version, source: ctx.source, ok: !failed, steps })
  return failed ? 1 : 0
}

module.exports = { doctor }
