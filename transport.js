'use strict'
// The public API: nodemailer's calling conventions over the native transport.
// Everything that decides anything (config validation, tokens, MIME, SMTP) is in Rust;
// this file only adds what JavaScript callers expect: callbacks, EventEmitter, inspection.

const { EventEmitter } = require('node:events')
const { inspect } = require('node:util')
const { NativeTransport, nameWarnings } = require('./binding.js')
const { version } = require('./package.json')

class Transport extends EventEmitter {
  #native
  #summary
  #log
  /** Stream reads of messages not yet handed to the native side. */
  #reading = new Set()
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
    const oauth2 = nativeConfig.oauth2
    if (oauth2 && typeof oauth2 === 'object' && typeof oauth2.clientAssertion === 'function') {
      nativeConfig.oauth2 = { ...oauth2, clientAssertion: assertionSource(oauth2.clientAssertion) }
    }
    // nodemailer's auth.expires may be a Date; the native side takes ms since the epoch.
    const auth = nativeConfig.auth
    if (auth && typeof auth === 'object' && auth.expires instanceof Date) {
      nativeConfig.auth = { ...auth, expires: auth.expires.getTime() }
    }
    const passedConfig = isObject ? nativeConfig : config
    const log = makeLogger(logger)
    this.#log = log
    if (isObject) warnUnknownConfigNames(config, log)
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
    const graph = typeof config.api === 'string' && config.api.trim().toLowerCase() === 'graph'
    this.#summary = {
      ...(graph ? { api: 'graph', graphUrl: config.graphUrl } : { host: config.host, port: config.port }),
      type: config.type !== undefined ? String(config.type) : authKind(config.auth),
      user: config.auth ? config.auth.user : undefined,
    }
  }

  /** Connects, starts TLS, gets a token, authenticates and quits; resolves `true`. */
  verify(callback) {
    return settle(() => this.#native.verify(), callback)
  }

  /** Sends one message; resolves with nodemailer's `info`. */
  sendMail(message, callback) {
    return settle(() => {
      warnUnknownMessageNames(message, this.#log)
      const prepared = prepareMessage(message)
      // Without streams the message is handed over now, so that close() right after
      // sendMail() waits for it; with streams, once they are read.
      const send = (ready) => this.#track(this.#submit((id) => this.#native.sendMail(ready, id)))
      if (prepared.streams.length === 0) return send(prepared.message)
      const reading = readStreams(prepared).then(send)
      const done = reading.then(
        () => this.#reading.delete(done),
        () => this.#reading.delete(done),
      )
      this.#reading.add(done)
      return reading
    }, callback)
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
   * setup problems they show: `{ isJwt, aud, roles, tid, appid, exp: Date | null, problems,
   * credential }`; `credential` says which credential obtained the token and where it comes
   * from (with a federated assertion's decoded `iss`/`sub`/`aud`/`exp`, never the assertion).
   */
  async inspectToken() {
    const report = await this.#native.inspectToken()
    const { credential } = report
    const assertion = credential && credential.assertion
    return {
      ...report,
      exp: report.exp == null ? null : new Date(report.exp),
      credential: credential && {
        ...credential,
        assertion: assertion ? { ...assertion, exp: assertion.exp == null ? null : new Date(assertion.exp) } : null,
      },
    }
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
    // Messages whose streams are still being read were sent before close(): they are
    // handed over first, so that close() waits for them as for any other.
    const reading = [...this.#reading]
    const force = Boolean(options && options.force)
    if (reading.length === 0) return this.#native.close(force)
    return Promise.allSettled(reading).then(() => this.#native.close(force))
  }

  toJSON() {
    return { name: this.name, version: this.version, ...this.#summary }
  }

  [inspect.custom]() {
    return `Transport ${inspect(this.#summary)}`
  }
}

/** What an `auth` object without a top-level `type` is: nodemailer's OAuth2 shape, a password, or nothing. */
function authKind(auth) {
  if (!auth || typeof auth !== 'object') return 'none'
  if (typeof auth.type === 'string' && auth.type.toLowerCase() === 'oauth2') return 'oauth2'
  return auth.pass ? 'login' : 'none'
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

// `oauth2.clientAssertion` as the native side calls it: always a Promise of a string. A
// throw, a rejection or another type becomes a rejection whose message says what happened
// (never the value returned, which may be a credential).
function assertionSource(callback) {
  return async () => {
    const assertion = await callback()
    if (typeof assertion !== 'string') {
      const got = assertion === null ? 'null' : Array.isArray(assertion) ? 'an array' : typeof assertion
      throw new TypeError(`it returned ${got}, not a string`)
    }
    return assertion
  }
}

let warnedInsecure = false
function warnInsecureOnce() {
  if (warnedInsecure) return
  warnedInsecure = true
  process.emitWarning('smtp-oauth-transport: tls.rejectUnauthorized is false, certificates are not verified', 'SecurityWarning')
}

// The header names the native builder writes itself. The builder cannot call JavaScript, so
// normalizeHeaderKey is called here once per name, with an empty value (nodemailer passes
// the encoded value, which only the builder knows), and the names it returns go to the
// native side as an object; control characters are dropped as nodemailer drops them. The
// `list` headers are not among them: nodemailer writes them prepared, which it never renames.
const BUILDER_HEADER_NAMES = [
  'From', 'Sender', 'To', 'Cc', 'Reply-To', 'Subject', 'Date', 'Message-ID', 'In-Reply-To', 'References',
  'MIME-Version', 'Content-Type', 'Content-Transfer-Encoding', 'Content-Disposition', 'Content-ID',
  'X-Priority', 'X-MSMail-Priority', 'Importance', 'X-Mailer',
]

function builderHeaderNames(normalize) {
  const renamed = {}
  for (const name of BUILDER_HEADER_NAMES) {
    const result = normalize(name, '')
    const cleaned = typeof result === 'string' ? result.replace(/[\x00-\x1f\x7f]/g, '') : ''
    if (cleaned && cleaned !== name) renamed[name] = cleaned
  }
  return renamed
}

// What the native side cannot take as it is, made plain here: Readable streams are read
// into Buffers (the MIME builder needs each part's bytes, and a stream may be consumed only
// once, so reading it here keeps a failed send from leaving a half-read stream behind),
// date strings become Dates as JavaScript parses them (as `new Date(text)`), and
// normalizeHeaderKey (a function) renames the custom headers and becomes the names of the
// builder's own headers (see builderHeaderNames). The caller's object is not changed.
function prepareMessage(message) {
  const streams = []
  if (message === null || typeof message !== 'object' || Array.isArray(message)) return { message, streams }
  const prepared = { ...message }
  if (typeof prepared.date === 'string') {
    const parsed = new Date(prepared.date)
    // An unparseable string goes on as it is: the native side names it.
    if (!Number.isNaN(parsed.getTime())) prepared.date = parsed
  }
  if (typeof prepared.normalizeHeaderKey === 'function') {
    const normalize = prepared.normalizeHeaderKey
    if (isPlainObject(prepared.headers)) {
      prepared.headers = Object.fromEntries(
        Object.entries(prepared.headers).map(([key, value]) =>
          // A prepared header is written as given, its name too (as nodemailer does).
          isPlainObject(value) && value.prepared ? [key, value] : [String(normalize(key, value) || key), value],
        ),
      )
    }
    prepared.normalizeHeaderKey = builderHeaderNames(normalize)
  } else {
    delete prepared.normalizeHeaderKey
  }
  // Each stream found: the object holding it, the key, and the field path for errors.
  const collect = (holder, key, path) => {
    if (isStream(holder[key])) streams.push({ holder, key, path })
  }
  const collectContent = (holder, key, path) => {
    collect(holder, key, path)
    if (isPlainObject(holder[key]) && (isStream(holder[key].content) || isStream(holder[key].raw))) {
      holder[key] = { ...holder[key] }
      collect(holder[key], 'content', `${path}.content`)
      collect(holder[key], 'raw', `${path}.raw`)
    }
  }
  for (const key of ['text', 'html', 'watchHtml', 'amp', 'raw', 'icalEvent']) collectContent(prepared, key, `message.${key}`)
  for (const key of ['attachments', 'alternatives']) {
    if (Array.isArray(prepared[key])) {
      prepared[key] = [...prepared[key]]
      prepared[key].forEach((_, index) => collectContent(prepared[key], index, `message.${key}[${index}]`))
    }
  }
  return { message: prepared, streams }
}

/** Reads every stream of a prepared message into a Buffer; resolves the message. */
async function readStreams({ message, streams }) {
  for (const { holder, key, path } of streams) holder[key] = await readStream(holder[key], path)
  return message
}

function isStream(value) {
  return value !== null && typeof value === 'object' && typeof value.pipe === 'function' && typeof value.on === 'function'
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value) && !isStream(value)
}

/** A Readable's bytes as one Buffer; a stream that fails is EMESSAGE naming the field. */
async function readStream(value, path) {
  const chunks = []
  try {
    for await (const chunk of value) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)
  } catch (err) {
    const error = new Error(`${path} is a stream that failed: ${err && err.message ? err.message : String(err)}`)
    error.code = 'EMESSAGE'
    error.permanent = true
    error.cause = err
    throw error
  }
  return Buffer.concat(chunks)
}

// Unknown names: each is told once per process, through the logger and process.emitWarning.
const warnedNames = new Set()

function emitNameWarnings(scope, names, log) {
  const fresh = names.filter((name) => !warnedNames.has(`${scope}:${name}`))
  if (fresh.length === 0) return
  for (const { name, text } of nameWarnings(scope, fresh)) {
    warnedNames.add(`${scope}:${name}`)
    const message = `smtp-oauth-transport: ${text}`
    if (log) log.warn(message)
    process.emitWarning(message, 'SmtpOAuthTransportWarning')
  }
  for (const name of fresh) warnedNames.add(`${scope}:${name}`)
}

function warnUnknownConfigNames(config, log) {
  emitNameWarnings('config', Object.keys(config), log)
  if (isPlainObject(config.oauth2)) emitNameWarnings('oauth2', Object.keys(config.oauth2), log)
  if (isPlainObject(config.tls)) emitNameWarnings('tls', Object.keys(config.tls), log)
}

function warnUnknownMessageNames(message, log) {
  if (!isPlainObject(message)) return
  emitNameWarnings('message', Object.keys(message), log)
  for (const item of [].concat(message.attachments || [])) {
    if (isPlainObject(item)) emitNameWarnings('attachment', Object.keys(item), log)
  }
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
