'use strict'
// The command line: parse, dispatch to doctor or send, map failures to exit codes
// (0 fine, 1 a step or the send failed, 2 a usage error).

const path = require('node:path')
const { UsageError, parse, usage } = require('./args.js')
const { doctor } = require('./doctor.js')
const { Output } = require('./output.js')
const { send } = require('./send.js')

const PACKAGE_ROOT = path.join(__dirname, '..', '..')
const { version } = require(path.join(PACKAGE_ROOT, 'package.json'))

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

async function main(argv, env) {
  const output = new Output({ json: argv.includes('--json') })
  try {
    const { values, positionals } = parse(argv)
    if (values.help) {
      process.stdout.write(usage(version))
      return 0
    }
    if (values.version) {
      process.stdout.write(`${version}\n`)
      return 0
    }
    const [command, ...extra] = positionals
    if (extra.length) throw new UsageError(`unexpected argument: ${extra[0]}`)
    if (command !== 'doctor' && command !== 'send')
      throw new UsageError(command ? `unknown command: ${command}` : 'give a command: doctor or send')
    const tools = { version, createTransport: (...args) => loadTransportModule().createTransport(...args) }
    return command === 'doctor' ? await doctor(values, env, output, tools) : await send(values, env, output, tools)
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

module.exports = { main }
