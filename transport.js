'use strict'
// The public API: nodemailer's calling conventions over the native transport.
// Everything that decides anything (config validation, tokens, MIME, SMTP) is in Rust;
// this file only adds what JavaScript callers expect: callbacks, EventEmitter, inspection.

const { EventEmitter } = require('node:events')
const { inspect } = require('node:util')
const { NativeTransport } = require('./binding.js')
const { version } = require('./package.json')

class Transport extends EventEmitter {
  #native
  #summary
  /** Sends in flight: id -> { resolve, reject }, settled by the native `onComplete`. */
  #pending = new Map()
  #nextId = 0

  /**
   * @param {object} config a TAS `mail.smtp` object
   * @param {object} [defaults] message fields used when a message lacks them (e.g. `from`)
   */
  constructor(config, defaults) {
    super()
    // The native side holds this callback for as long as the transport lives; a WeakRef
    // keeps that from holding the transport itself (which would then never be collected).
    const self = new WeakRef(this)
    const onToken = ({ user, expiresAt }) => {
      const transport = self.deref()
      if (transport) transport.emit('token', { user, expiresAt: new Date(expiresAt) })
    }
    // Anything but a plain object goes to the native side as it is, which names it
    // (`mail.smtp must be an object, got ...`).
    const isObject = config !== null && typeof config === 'object' && !Array.isArray(config)
    const { logger, ...nativeConfig } = isObject ? config : { logger: undefined }
    const passedConfig = isObject ? nativeConfig : config
    const log = makeLogger(logger)
    const onLog = log ? ({ level, message }) => log[level](message) : undefined
    if (!log && isObject && config.tls && config.tls.rejectUnauthorized === false) warnInsecureOnce()
    const onComplete = (id, error, info) => {
      const transport = self.deref()
      if (transport) transport.#complete(id, error, info)
    }
    this.#native = new NativeTransport(passedConfig, onComplete, defaults, onToken, onLog)
    if (nativeConfig.pool) {
      quitAtExit(this, this.#native)
      // As nodemailer's pool: a pooled transport announces that it can take messages.
      setImmediate(() => this.isIdle() && this.emit('idle'))
    }
    this.name = 'smtp-oauth-transport'
    this.version = version
    // What inspection shows: where mail goes and as whom; never a secret.
    this.#summary = {
      host: config.host,
      port: config.port,
      type: config.type === undefined ? (config.auth && config.auth.pass ? 'login' : 'none') : String(config.type),
      user: config.auth ? config.auth.user : undefined,
    }
  }

  /** Connects, starts TLS, gets a token, authenticates and quits; resolves `true`. */
  verify(callback) {
    return settle(() => this.#native.verify(), callback)
  }

  /** Sends one message; resolves with nodemailer's `info`. */
  sendMail(message, callback) {
    return settle(() => this.#track(this.#submit((id) => this.#native.sendMail(message, id))), callback)
  }

  /**
   * nodemailer's transport plugin API: `nodemailer.createTransport(createTransport(smtp))`
   * lets nodemailer build the message (templates, DKIM, icalEvent, ...) and this transport
   * send its bytes as they are, with nodemailer's envelope.
   */
  send(mail, callback) {
    const envelope = mail.message.getEnvelope()
    const messageId = mail.message.messageId()
    mail.message.build((err, raw) => {
      if (err) return callback(err)
      const sending = this.#submit((id) => this.#native.sendRaw(raw, { from: envelope.from || undefined, to: envelope.to, dsn: mail.data.dsn }, id))
      this.#track(sending).then(
        (info) => callback(null, { ...info, envelope, messageId }),
        (sendErr) => callback(sendErr),
      )
    })
  }

  /** nodemailer's `isIdle()`: `true` when a message would be sent without queueing. */
  isIdle() {
    return this.#native.isIdle()
  }

  // Starts a native send under a fresh id; its outcome arrives through `#complete`. While
  // any send is pending, the transport is kept reachable and the process alive.
  #submit(start) {
    this.#nextId = (this.#nextId + 1) >>> 0
    const id = this.#nextId
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      holdProcess(this)
      try {
        start(id)
      } catch (err) {
        this.#complete(id, err, null)
      }
    })
  }

  #complete(id, error, info) {
    const pending = this.#pending.get(id)
    if (!pending) return
    this.#pending.delete(id)
    if (this.#pending.size === 0) releaseProcess(this)
    if (error) pending.reject(error)
    else pending.resolve(info)
  }

  // After each send, tell listeners when the pool has room again (nodemailer's `idle`).
  #track(promise) {
    const emitIdle = () => {
      if (this.listenerCount('idle') > 0 && this.#native.isIdle()) this.emit('idle')
    }
    promise.then(emitIdle, emitIdle)
    return promise
  }

  /**
   * The current access token (cached, or fetched now), e.g. to call Microsoft Graph too.
   * Resolves `{ accessToken, expiresAt: Date }`.
   */
  async getAccessToken() {
    const { accessToken, expiresAt } = await this.#native.getAccessToken()
    return { accessToken, expiresAt: new Date(expiresAt) }
  }

  /**
   * The current token's claims that matter for SMTP (decoded, not verified) and the
   * setup problems they show: `{ isJwt, aud, roles, tid, appid, exp: Date | null, problems }`.
   */
  async inspectToken() {
    const report = await this.#native.inspectToken()
    return { ...report, exp: report.exp == null ? null : new Date(report.exp) }
  }

  /**
   * Walks the whole chain with the transport's own code, as `smtp-oauth-transport doctor`
   * does: config, token, token claims, SMTP server (DNS, TCP, greeting, EHLO, STARTTLS, TLS,
   * certificate chain), AUTH and, with `sendTo`, a test message. Never rejects for a broken
   * link: resolves `{ ok, steps }`, each step `{ step, name, title, ok, status, finding, fix,
   * hint: { id, params, text } | null, warnings, details, elapsedMs }`.
   */
  probe(options = {}) {
    return this.#native.probe({ sendTo: options.sendTo, from: options.from })
  }

  /**
   * Waits until queued messages are sent (with `{ force: true }`: rejects them), closes
   * pooled connections with QUIT, and releases the transport: the secrets it holds are
   * zeroed; later sends reject.
   */
  close(options) {
    forgetAtExit(this)
    return this.#native.close(Boolean(options && options.force))
  }

  toJSON() {
    return { name: this.name, version: this.version, ...this.#summary }
  }

  [inspect.custom]() {
    return `Transport ${inspect(this.#summary)}`
  }
}

// Native work does not hold Node's event loop; pending sends must. One timer, referenced
// while any transport has a send in flight, does that (and the set keeps those transports
// from being collected before their sends settle).
const inFlight = new Set()
let keepAlive = null

function holdProcess(transport) {
  inFlight.add(transport)
  if (!keepAlive) keepAlive = setInterval(() => {}, 2 ** 30)
}

function releaseProcess(transport) {
  inFlight.delete(transport)
  if (inFlight.size === 0 && keepAlive) {
    clearInterval(keepAlive)
    keepAlive = null
  }
}

// Pooled connections live in native tasks that do not hold the event loop: a script that
// ends (naturally, or with process.exit(), which runs no event loop and no native cleanup
// hooks) without close() would drop them without a word. Node emits 'exit' in both cases,
// so one listener, present only while an unclosed pooled transport exists, closes them
// there, synchronously (QUIT, bounded to half a second). Transports are held weakly: an
// unclosed one can still be collected.
const atExit = new Map() // key -> WeakRef of a transport's native half
const exitKeys = new WeakMap() // transport -> its key in atExit
const collected = new FinalizationRegistry((key) => atExit.delete(key) && updateExitListener())

function quitAtExit(transport, native) {
  // The key is a token, not the transport, so that neither map keeps the transport alive.
  const key = {}
  atExit.set(key, new WeakRef(native))
  collected.register(transport, key, key)
  exitKeys.set(transport, key)
  updateExitListener()
}

function forgetAtExit(transport) {
  const key = exitKeys.get(transport)
  if (!key) return
  exitKeys.delete(transport)
  collected.unregister(key)
  atExit.delete(key)
  updateExitListener()
}

let listening = false
function updateExitListener() {
  if (atExit.size > 0 && !listening) process.on('exit', closePoolsAtExit)
  if (atExit.size === 0 && listening) process.removeListener('exit', closePoolsAtExit)
  listening = atExit.size > 0
}

function closePoolsAtExit() {
  for (const native of atExit.values()) {
    const alive = native.deref()
    if (alive) alive.closeAtExit()
  }
  atExit.clear()
}

const LEVELS = ['debug', 'info', 'warn', 'error']

// nodemailer's `logger` option: `true` logs to the console, an object with
// debug/info/warn/error methods (console, pino, bunyan, ...) receives the lines.
function makeLogger(logger) {
  if (!logger) return null
  if (logger === true) {
    const print = (level) => (message) => console.error(`[smtp-oauth-transport] ${level.toUpperCase()} ${message}`)
    return Object.fromEntries(LEVELS.map((level) => [level, print(level)]))
  }
  if (typeof logger !== 'object' && typeof logger !== 'function') return null
  // A logger that throws must not turn every log line into an uncaught exception.
  const call = (level) => (message) => {
    try {
      logger[level](message)
    } catch {
      // Logging is best effort.
    }
  }
  const pick = (level) => (typeof logger[level] === 'function' ? call(level) : () => {})
  return Object.fromEntries(LEVELS.map((level) => [level, pick(level)]))
}

let warnedInsecure = false
function warnInsecureOnce() {
  if (warnedInsecure) return
  warnedInsecure = true
  process.emitWarning('smtp-oauth-transport: tls.rejectUnauthorized is false, certificates are not verified', 'SecurityWarning')
}

// nodemailer's convention: with a callback, call it and return undefined; without, a promise.
function settle(start, callback) {
  let promise
  try {
    promise = start()
  } catch (err) {
    promise = Promise.reject(err)
  }
  if (typeof callback !== 'function') return promise
  promise.then((value) => callback(null, value), (err) => callback(err))
  return undefined
}

/**
 * Creates a transport from a TAS `mail.smtp` object. Throws `ECONFIG` naming the field
 * when the config is incomplete; makes no network call.
 */
function createTransport(config, defaults) {
  return new Transport(config, defaults)
}

module.exports = { createTransport, Transport }
