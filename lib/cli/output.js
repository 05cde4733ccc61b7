'use strict'
// Where the CLI's words go: text with progress on a terminal, or one JSON object. Every line
// passes a redactor that knows the configured secrets (the core never reports one; this is
// the second lock).

class Redactor {
  #forms = new Set()

  /** Remembers a secret in the forms it could be printed in. */
  add(secret) {
    if (typeof secret !== 'string' || secret.length < 4) return
    this.#forms.add(secret)
    this.#forms.add(encodeURIComponent(secret))
    this.#forms.add(JSON.stringify(secret).slice(1, -1))
  }

  redact(text) {
    let out = String(text)
    for (const form of this.#forms) out = out.split(form).join('[redacted]')
    return out
  }
}

class Output {
  constructor({ json, redactor = new Redactor(), stream = process.stdout }) {
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

  /** Shows what is going on: a spinner on a terminal, a plain line otherwise. */
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

  /** One doctor step: ✔/✘/–, its finding, notes, warnings and fix. */
  step(step, notes = []) {
    const mark = step.status === 'pass' ? '✔' : step.status === 'fail' ? '✘' : '–'
    this.line(`${mark} ${step.step}. ${step.title}: ${step.finding}`)
    for (const note of notes) this.line(`     ${note}`)
    for (const warning of step.warnings || []) this.block('warning', warning.text)
    if (step.fix) this.block('fix', step.fix)
  }

  block(label, text) {
    const [first, ...rest] = String(text).split('\n')
    this.line(`     ${label}: ${first}`)
    for (const line of rest) this.line(`${' '.repeat(label.length + 7)}${line}`)
  }
}

module.exports = { Output, Redactor }
