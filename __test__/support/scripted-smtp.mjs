// A hand-written SMTP server on 127.0.0.1 whose every reply can be scripted, for the fault
// and downgrade tests that smtp-server cannot produce: a greeting of 554 or none at all,
// EHLO refused, STARTTLS stripped or refused with 454, data injected after "220 Go ahead",
// endless reply lines, thousands of continuation lines, 552 after the message, a
// connection dropped during DATA, silence after the final ".".
//
// Unlike smtp-server it accepts AUTH even over plaintext (so a client that does not insist
// on TLS would be caught sending its credential) and records every byte it receives, before
// and after TLS, so tests can assert on what actually went over the wire.
//
// Default behaviour (every step can be replaced through `opts.on`):
//   greeting   220 localhost ESMTP scripted test server
//   EHLO       250-localhost / [250-STARTTLS unless TLS is up or `starttls: false`] /
//              250-AUTH XOAUTH2 PLAIN LOGIN / 250-8BITMIME / 250-SMTPUTF8 / 250 [SIZE n]
//   HELO       250 localhost
//   STARTTLS   220 2.0.0 Ready to start TLS, then the TLS handshake (test PKI)
//   AUTH       XOAUTH2 / PLAIN initial response: 235 if `validTokens` (XOAUTH2) or
//              `password` (PLAIN) accepts it, else 535 5.7.3 Authentication unsuccessful
//   MAIL, RCPT 250;  DATA 354;  end of data 250 2.6.0 Queued;  RSET, NOOP 250;  QUIT 221
import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { makeTestPki } from './certs.mjs';
import { closerOf, listenOnLoopback } from './listen.mjs';

/** Returned by a handler: send no reply at all (the client waits). */
export const SILENT = Symbol('silent');
/** Returned by a handler: destroy the connection at once, without a reply. */
export const CLOSE = Symbol('close');

/**
 * @param {object} [opts]
 * @param {{certPem:string,keyPem:string}} [opts.pki]  server certificate (default makeTestPki())
 * @param {object} [opts.tlsOptions]    extra tls.TLSSocket options, e.g. { maxVersion: 'TLSv1.2' }
 * @param {boolean} [opts.starttls]     false: do not advertise STARTTLS (the command still works)
 * @param {number} [opts.size]          advertise SIZE n
 * @param {() => string[]} [opts.validTokens]  XOAUTH2 tokens accepted (default: any token)
 * @param {string} [opts.password]      PLAIN password accepted (default: any)
 * @param {Record<string, Handler>} [opts.on]  replace a step: greeting, EHLO, HELO, STARTTLS,
 *        AUTH, MAIL, RCPT, DATA, DOT (end of data; also gets the message), QUIT, RSET, NOOP,
 *        dataChunk (each chunk of message content; return CLOSE to drop the connection)
 *        Handler: (conn, line, extra) => string | string[] | SILENT | CLOSE | undefined
 *        (undefined: default behaviour; a string array is sent as a multi-line reply as is,
 *        each element one line; a string may hold several lines separated by CRLF)
 * @returns {Promise<ScriptedSmtp>}
 *
 * @typedef {object} ScriptedSmtp
 * @property {number} port
 * @property {Array<Conn>} connections
 * @property {() => Array<{line:string,secure:boolean,conn:number}>} commands  every command line, in order
 * @property {Array<{method:string,user:string|null,token:string|null,password:string|null,raw:string,secure:boolean,accepted:boolean}>} auths
 * @property {Array<{from:string|null,to:string[],data:Buffer,secure:boolean}>} messages  complete messages received (after the final ".")
 * @property {number} dataStarts        how many times DATA was answered 354
 * @property {() => Buffer} rawReceived  every byte received on every connection (plaintext and decrypted TLS)
 * @property {() => Promise<void>} close
 *
 * @typedef {object} Conn
 * @property {number} id
 * @property {boolean} secure
 * @property {string|null} protocol     negotiated TLS version ('TLSv1.3', ...)
 * @property {Error|null} tlsError       why the TLS handshake failed, if it did
 * @property {Array<{line:string,secure:boolean}>} commands
 * @property {Buffer[]} received        raw chunks (decrypted after STARTTLS)
 * @property {number} openedAt
 * @property {number|null} closedAt
 * @property {number} bytesWritten      bytes this server wrote (for flood tests)
 * @property {(text: string) => void} write  write raw text
 * @property {(chunk: string|Buffer, opts?: {prefix?: string}) => void} flood  write `chunk` forever (with backpressure) until the client goes away
 * @property {() => void} destroy
 */
export async function startScriptedSmtp(opts = {}) {
    const pki = opts.pki || makeTestPki();
    const on = opts.on || {};
    const connections = [];
    const auths = [];
    const messages = [];
    const sockets = new Set();
    let dataStarts = 0;
    let nextId = 1;

    const defaults = {
        greeting: () => '220 localhost ESMTP scripted test server',
        EHLO: conn =>
            [
                '250-localhost',
                ...(conn.secure || opts.starttls === false ? [] : ['250-STARTTLS']),
                '250-AUTH XOAUTH2 PLAIN LOGIN',
                '250-8BITMIME',
                '250-SMTPUTF8',
                opts.size ? `250 SIZE ${opts.size}` : '250 HELP'
            ].join('\r\n'),
        HELO: () => '250 localhost',
        STARTTLS: () => '220 2.0.0 Ready to start TLS',
        AUTH: (conn, line) => {
            const attempt = parseAuth(line);
            let ok;
            if (attempt.method === 'XOAUTH2') {
                ok = attempt.token !== null && (typeof opts.validTokens !== 'function' || opts.validTokens().includes(attempt.token));
            } else if (attempt.method === 'PLAIN') {
                ok = attempt.password !== null && (opts.password === undefined || opts.password === attempt.password);
            } else {
                ok = false;
            }
            return ok ? '235 2.7.0 Authentication successful' : '535 5.7.3 Authentication unsuccessful';
        },
        MAIL: () => '250 2.1.0 Sender OK',
        RCPT: () => '250 2.1.5 Recipient OK',
        DATA: () => '354 Start mail input; end with <CRLF>.<CRLF>',
        DOT: () => `250 2.6.0 <${crypto.randomBytes(6).toString('hex')}@localhost> Queued mail for delivery`,
        RSET: () => '250 2.0.0 OK',
        NOOP: () => '250 2.0.0 OK',
        QUIT: () => '221 2.0.0 Service closing transmission channel'
    };

    function attach(conn, socket) {
        conn.socket = socket;
        socket.on('data', chunk => onData(conn, chunk));
        socket.on('error', () => {});
    }

    function reply(conn, answer) {
        if (answer === SILENT || conn.destroyed) {
            return;
        }
        if (answer === CLOSE) {
            conn.destroy();
            return;
        }
        const text = Array.isArray(answer) ? answer.join('\r\n') : answer;
        conn.write(`${text}\r\n`);
    }

    function step(conn, name, line, extra) {
        const custom = on[name] ? on[name](conn, line, extra) : undefined;
        return custom !== undefined ? custom : defaults[name] ? defaults[name](conn, line, extra) : '502 5.5.2 Command not implemented';
    }

    function onData(conn, chunk) {
        conn.received.push(Buffer.from(chunk));
        conn.buffer = Buffer.concat([conn.buffer, chunk]);
        processBuffer(conn);
    }

    function processBuffer(conn) {
        for (;;) {
            if (conn.destroyed || conn.upgrading) {
                return;
            }
            if (conn.inData) {
                if (on.dataChunk && on.dataChunk(conn, conn.buffer) === CLOSE) {
                    conn.destroy();
                    return;
                }
                // The end of data is CRLF "." CRLF (or "." CRLF right after the 354).
                const data = Buffer.concat([Buffer.from('\r\n'), conn.buffer]);
                const end = data.indexOf('\r\n.\r\n');
                if (end < 0) {
                    return;
                }
                const content = data.subarray(2, Math.max(2, end + 2));
                conn.buffer = data.subarray(end + 5);
                conn.inData = false;
                const unstuffed = Buffer.from(content.toString('latin1').replace(/^\.\./gm, '.'), 'latin1');
                const message = { from: conn.mailFrom, to: conn.rcptTo.slice(), data: unstuffed, secure: conn.secure };
                const answer = step(conn, 'DOT', '.', message);
                if (typeof answer === 'string' && answer.startsWith('2')) {
                    messages.push(message);
                }
                conn.mailFrom = null;
                conn.rcptTo = [];
                reply(conn, answer);
                continue;
            }
            const nl = conn.buffer.indexOf('\n');
            if (nl < 0) {
                return;
            }
            const line = conn.buffer.subarray(0, nl).toString('utf8').replace(/\r$/, '');
            conn.buffer = conn.buffer.subarray(nl + 1);
            handleLine(conn, line);
        }
    }

    function handleLine(conn, line) {
        conn.commands.push({ line, secure: conn.secure });
        const verb = (/^\s*([A-Za-z]+)/.exec(line) || [, ''])[1].toUpperCase();
        switch (verb) {
            case 'AUTH': {
                // Recorded whoever answers it, with the credential it carried.
                const attempt = parseAuth(line);
                attempt.secure = conn.secure;
                const answer = step(conn, 'AUTH', line);
                attempt.accepted = typeof answer === 'string' && answer.startsWith('235');
                auths.push(attempt);
                if (attempt.accepted) {
                    conn.user = attempt.user;
                }
                return reply(conn, answer);
            }
            case 'EHLO':
            case 'HELO':
            case 'RSET':
            case 'NOOP':
                return reply(conn, step(conn, verb, line));
            case 'MAIL': {
                const answer = step(conn, 'MAIL', line);
                if (typeof answer === 'string' && answer.startsWith('2')) {
                    conn.mailFrom = (/<([^>]*)>/.exec(line) || [, null])[1];
                }
                return reply(conn, answer);
            }
            case 'RCPT': {
                const answer = step(conn, 'RCPT', line);
                if (typeof answer === 'string' && answer.startsWith('2')) {
                    conn.rcptTo.push((/<(.*)>/.exec(line) || [, line])[1]);
                }
                return reply(conn, answer);
            }
            case 'DATA': {
                const answer = step(conn, 'DATA', line);
                if (typeof answer === 'string' && answer.startsWith('354')) {
                    dataStarts += 1;
                    conn.inData = true;
                }
                return reply(conn, answer);
            }
            case 'STARTTLS': {
                const answer = step(conn, 'STARTTLS', line);
                reply(conn, answer);
                if (typeof answer === 'string' && /^220[ -]/.test(answer.split('\r\n').at(-1)) && !conn.secure) {
                    upgrade(conn);
                }
                return undefined;
            }
            case 'QUIT': {
                const answer = step(conn, 'QUIT', line);
                reply(conn, answer);
                // SILENT: the script answers (and closes) later, if at all.
                if (answer !== SILENT) {
                    conn.socket.end();
                }
                return undefined;
            }
            default:
                // An empty line answers a 334 challenge; anything else is unknown.
                return reply(conn, on.other ? on.other(conn, line) : '502 5.5.2 Command not implemented');
        }
    }

    function upgrade(conn) {
        conn.upgrading = true;
        const plain = conn.socket;
        plain.removeAllListeners('data');
        // Whatever the client sent after STARTTLS and before the handshake is dropped.
        conn.buffer = Buffer.alloc(0);
        const secure = new tls.TLSSocket(plain, {
            isServer: true,
            key: pki.keyPem,
            cert: pki.certPem,
            ...(opts.tlsOptions || {})
        });
        secure.on('secure', () => {
            conn.secure = true;
            conn.protocol = secure.getProtocol();
            conn.upgrading = false;
            processBuffer(conn); // anything that arrived with the end of the handshake
        });
        secure.on('error', err => {
            conn.tlsError = err;
            conn.destroy();
        });
        attach(conn, secure);
    }

    const server = net.createServer(socket => {
        sockets.add(socket);
        const conn = {
            id: nextId++,
            secure: false,
            protocol: null,
            tlsError: null,
            commands: [],
            received: [],
            openedAt: Date.now(),
            closedAt: null,
            bytesWritten: 0,
            buffer: Buffer.alloc(0),
            inData: false,
            upgrading: false,
            destroyed: false,
            mailFrom: null,
            rcptTo: [],
            user: null,
            socket,
            write(text) {
                if (!this.destroyed) {
                    this.bytesWritten += Buffer.byteLength(text);
                    this.socket.write(text);
                }
            },
            flood(chunk, { prefix = '' } = {}) {
                const target = this.socket;
                if (prefix) {
                    this.write(prefix);
                }
                const pump = () => {
                    while (!this.destroyed && !target.destroyed) {
                        this.bytesWritten += chunk.length;
                        if (!target.write(chunk)) {
                            target.once('drain', pump);
                            return;
                        }
                    }
                };
                pump();
            },
            destroy() {
                this.destroyed = true;
                this.socket.destroy();
                socket.destroy();
            }
        };
        connections.push(conn);
        socket.on('close', () => {
            conn.closedAt = Date.now();
            conn.destroyed = true;
            sockets.delete(socket);
        });
        attach(conn, socket);
        reply(conn, on.greeting ? on.greeting(conn) ?? defaults.greeting(conn) : defaults.greeting(conn));
    });

    const port = await listenOnLoopback(server);

    return {
        host: '127.0.0.1',
        port,
        connections,
        auths,
        messages,
        get dataStarts() {
            return dataStarts;
        },
        commands: () => connections.flatMap(c => c.commands.map(cmd => ({ ...cmd, conn: c.id }))),
        rawReceived: () => Buffer.concat(connections.flatMap(c => c.received)),
        close: closerOf(server, sockets)
    };
}

/** `AUTH XOAUTH2 <b64>` / `AUTH PLAIN <b64>` -> what it carries. */
function parseAuth(line) {
    const [, method = '', arg = ''] = /^\s*AUTH\s+(\S+)\s*(\S*)/i.exec(line) || [];
    const attempt = { method: method.toUpperCase(), user: null, token: null, password: null, raw: arg, secure: false, accepted: false };
    const decoded = arg ? Buffer.from(arg, 'base64').toString('utf8') : '';
    if (attempt.method === 'XOAUTH2') {
        const user = /(?:^|\x01)user=([^\x01]*)/.exec(decoded);
        const bearer = /\x01auth=Bearer ([^\x01]*)/.exec(decoded);
        attempt.user = user ? user[1] : null;
        attempt.token = bearer ? bearer[1] : null;
    } else if (attempt.method === 'PLAIN') {
        const parts = decoded.split('\x00');
        if (parts.length === 3) {
            attempt.user = parts[1];
            attempt.password = parts[2];
        }
    }
    return attempt;
}
