// A submission server (port-587 style) on 127.0.0.1 that behaves like Exchange Online
// in the ways the transport depends on: plaintext greeting, STARTTLS, AUTH XOAUTH2
// required before MAIL, Exchange-like refusal texts. Everything it sees is recorded so
// tests can assert on what actually went over the wire.
//
// Notes from smtp-server 3.21's source (dist/cjs/smtp-connection.js, sasl.js):
// - AUTH before STARTTLS is answered `538 Error: Must issue a STARTTLS command first`
//   unless STARTTLS is hidden/disabled: then AUTH is allowed in plaintext, which is what
//   the "no STARTTLS" test needs (a client that does not insist on TLS would leak the
//   token). hideSTARTTLS only hides the EHLO keyword, the command itself keeps working,
//   so noStartTls also disables the command.
// - Enhanced status codes are off by default (hideENHANCEDSTATUSCODES), so refusal texts
//   here carry their own "5.7.3"-style code, like Exchange's replies.
// - XOAUTH2 refusal: onAuth callback(err) sends `err.responseCode || 535` + err.message at
//   once; callback(null, { data }) (no `user`) sends `334 base64(JSON.stringify(data))`,
//   waits for one more line from the client (normally empty) and then answers
//   `535 Error: Username and Password not accepted`.
// - Each connection waits 100 ms before the greeting (early-talker detection) and does a
//   reverse DNS lookup of the client unless disableReverseLookup is set (it is, here).
import { EventEmitter } from 'node:events';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { makeTestPki } from './certs.mjs';
import { listenOnLoopback } from './listen.mjs';

// unref: a held DATA reply must not keep the test process alive after close()
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms).unref());

function smtpError(responseCode, message) {
    const err = new Error(message);
    err.responseCode = responseCode;
    return err;
}

/**
 * Starts the test SMTP server.
 *
 * @param {object} [opts]
 * @param {string} [opts.user]            mailbox that may authenticate (XOAUTH2 user= / PLAIN/LOGIN username)
 * @param {string} [opts.password]        password for PLAIN/LOGIN
 * @param {() => string[]} [opts.validTokens]  access tokens currently accepted for XOAUTH2
 *                                        (a function, so it can read the token server's live list)
 * @param {(auth: object) => boolean} [opts.acceptAuth]  replaces the default accept rule
 * @param {string[]} [opts.authMethods]   default ['XOAUTH2']; ['PLAIN', 'LOGIN'] for the basic path
 * @param {boolean} [opts.challengeOnFail] refuse XOAUTH2 Google-style: 334 JSON challenge, then 535
 * @param {{responseCode:number,message:string}} [opts.authRefusal]  default 535 "5.7.3 Authentication unsuccessful"
 * @param {boolean} [opts.noStartTls]     do not offer (nor accept) STARTTLS
 * @param {boolean} [opts.authOptional]   accept MAIL without AUTH (a relay that trusts the network)
 * @param {boolean} [opts.requestClientCert] ask for a TLS client certificate (accepting any)
 * @param {boolean} [opts.implicitTls]    TLS from the first byte (port-465 style, `secure: true` clients)
 * @param {{certPem:string,keyPem:string}} [opts.pki]  server certificate (default makeTestPki())
 * @param {string[]} [opts.refuseRecipients]  RCPT TO addresses answered 550 5.1.1
 * @param {boolean} [opts.sendAsOnly]    like Exchange without a SendAs grant: MAIL FROM an address other
 *                                        than the authenticated user is answered
 *                                        `550 5.7.60 SMTP; Client does not have permissions to send as this sender`
 * @param {number} [opts.size]            advertised SIZE limit, oversized messages get 552
 * @param {number} [opts.dataDelayMs]     hold the reply to the end of DATA this long
 * @param {number} [opts.socketTimeout]   idle timeout of the server (smtp-server default 60 s)
 * @param {number} [opts.maxClients]      connection limit (smtp-server default: none)
 * @param {(index:number, session:object) => ({responseCode:number,message:string}|null|undefined)} [opts.refuseConnection]
 *                                        called for every connection (index counts from 0); a refusal is sent
 *                                        instead of the 220 greeting (e.g. `421 4.3.2 Service not available`)
 *                                        and the connection is closed
 * @param {(index:number, session:object) => number} [opts.greetingDelayMs]  hold the greeting of connection
 *                                        `index` (from 0) this many ms (0: none)
 * @param {(index:number, address:string, session:object) => ({responseCode:number,message:string}|null|undefined)} [opts.refuseMailFrom]
 *                                        called for every MAIL FROM (index counts from 0); a refusal answers it
 *                                        (e.g. `432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded`)
 * @param {(index:number, session:object) => (string|null|undefined)} [opts.dataFault]
 *                                        called for every DATA command (index counts from 0); returns a fault:
 *                                        'drop-at-data'   the connection is destroyed instead of the 354 reply
 *                                        'drop-mid-data'  354, then the server stops reading and, once the client
 *                                                         is stuck writing (dataFaultDelayMs), destroys the
 *                                                         connection: the final "." never arrives (needs a message
 *                                                         larger than the socket buffers, a few MB)
 *                                        'drop-after-dot' the whole message is received (recorded in `received`),
 *                                                         then the connection is destroyed without a reply
 *                                        'no-reply'       the whole message is received (recorded in `received`),
 *                                                         and no reply ever comes (the connection stays open)
 *                                        'tempfail-after-dot' the whole message is received (recorded in `received`)
 *                                                         and refused `451 4.3.0 Temporary server error...`
 * @param {(socket:import('node:tls').TLSSocket, session:object) => void} [opts.onSecureSocket]  called with each
 *                                        session's TLS socket (e.g. to watch the decrypted bytes the client sends)
 * @param {number} [opts.dataFaultDelayMs] 'drop-mid-data': how long to stop reading before dropping (default 300)
 * @returns {Promise<TestSmtpServer>}
 *
 * @typedef {object} TestSmtpServer
 * @property {number} port
 * @property {string} host                '127.0.0.1'
 * @property {Array<{envelope:{from:string,to:string[]},raw:Buffer,parsed:object,secure:boolean,user:string}>} messages
 * @property {Array<{method:string,username:string,accessToken?:string,password?:string,secure:boolean,accepted:boolean}>} authAttempts
 * @property {Array<{id:string,remoteAddress:string,openedAt:number,closedAt:number|null,secure:boolean,servername:string|null}>} connections
 * @property {Array<{address:string,accepted:boolean}>} rcptAttempts  every RCPT TO, accepted or not
 * @property {Array<{address:string}>} mailFromAttempts               every MAIL FROM
 * @property {Array<{id:string,raw:Buffer,messageId:string|null,at:number,fault:string|null}>} received
 *                                        every message whose final "." arrived, answered or not (a faulty
 *                                        'drop-after-dot' / 'no-reply' one is here but not in `messages`)
 * @property {number} dataCommands        DATA commands seen
 * @property {number} openConnections     TCP connections open now
 * @property {number} peakConnections     most TCP connections that were open at the same time
 * @property {boolean} insecureAuth       true if any AUTH arrived over a non-TLS session
 * @property {EventEmitter} events        'connect', 'auth', 'data-start', 'message', 'close'
 * @property {SMTPServer} server          the smtp-server instance
 * @property {() => Promise<void>} close
 */
export async function startSmtpServer(opts = {}) {
    const pki = opts.pki || makeTestPki();
    const events = new EventEmitter();
    const messages = [];
    const authAttempts = [];
    const connections = [];
    const rcptAttempts = [];
    const mailFromAttempts = [];
    const bySession = new Map(); // session.id -> connection record
    const refused = new Set((opts.refuseRecipients || []).map(a => a.toLowerCase()));
    const received = [];
    const counters = { connect: 0, mailFrom: 0, data: 0, peak: 0 };
    // remotePort -> raw TCP socket of each open connection: counts concurrent connections,
    // and lets a fault tear down one session's connection. A connection stops counting when
    // the client ends it ('end': its FIN arrived) or it closes. After STARTTLS the TLS socket
    // owns the handle and the raw socket emits neither, so the TLS socket's events count then
    // (smtp-server's onClose comes a loop iteration later, too late for an exact count).
    const rawByPort = new Map();

    const defaultAccept = auth => {
        if (auth.method === 'XOAUTH2') {
            const valid = typeof opts.validTokens === 'function' ? opts.validTokens() : [];
            return auth.username === opts.user && valid.includes(auth.accessToken);
        }
        if (auth.method === 'PLAIN' || auth.method === 'LOGIN') {
            return opts.user !== undefined && auth.username === opts.user && auth.password === opts.password;
        }
        return false;
    };
    const acceptAuth = opts.acceptAuth || defaultAccept;

    const server = new SMTPServer({
        secure: !!opts.implicitTls,
        name: 'localhost',
        banner: 'test submission server',
        key: pki.keyPem,
        cert: pki.certPem,
        authMethods: opts.authMethods || ['XOAUTH2'],
        authOptional: !!opts.authOptional,
        // Ask for a client certificate (any is accepted; tests read it from the TLS socket).
        ...(opts.requestClientCert ? { requestCert: true, rejectUnauthorized: false } : {}),
        hideSTARTTLS: !!opts.noStartTls,
        disabledCommands: opts.noStartTls ? ['STARTTLS'] : [],
        size: opts.size || 0,
        logger: false,
        disableReverseLookup: true,
        // Exchange closes sessions that waste commands; keep smtp-server's default limit.
        socketTimeout: opts.socketTimeout || 60 * 1000,
        // close() below forces connections down; this only bounds smtp-server's own wait.
        closeTimeout: 200,
        ...(opts.maxClients ? { maxClients: opts.maxClients } : {}),

        onConnect(session, callback) {
            const record = {
                id: session.id,
                remoteAddress: session.remoteAddress,
                openedAt: Date.now(),
                closedAt: null,
                secure: false,
                servername: null
            };
            connections.push(record);
            bySession.set(session.id, record);
            events.emit('connect', record);
            const index = counters.connect++;
            const refusal = opts.refuseConnection ? opts.refuseConnection(index, session) : null;
            if (refusal) {
                return callback(smtpError(refusal.responseCode, refusal.message));
            }
            const delay = opts.greetingDelayMs ? opts.greetingDelayMs(index, session) : 0;
            if (delay) {
                return setTimeout(() => callback(), delay).unref();
            }
            callback();
        },

        onSecure(socket, session, callback) {
            const raw = rawByPort.get(session.remotePort);
            const release = () => {
                if (rawByPort.get(session.remotePort) === raw) {
                    rawByPort.delete(session.remotePort);
                }
            };
            socket.once('end', release);
            socket.once('close', release);
            if (opts.onSecureSocket) {
                opts.onSecureSocket(socket, session);
            }
            const record = bySession.get(session.id);
            if (record) {
                record.secure = true;
                record.servername = session.servername || null; // SNI sent by the client
            }
            callback();
        },

        onClose(session) {
            const record = bySession.get(session.id);
            if (record) {
                record.closedAt = Date.now();
                events.emit('close', record);
            }
        },

        onAuth(auth, session, callback) {
            const attempt = {
                method: auth.method,
                username: auth.username,
                accessToken: auth.accessToken,
                password: auth.password,
                secure: !!session.secure,
                accepted: false
            };
            try {
                attempt.accepted = !!acceptAuth(attempt);
            } catch (err) {
                attempt.accepted = false;
                attempt.acceptError = err;
            }
            authAttempts.push(attempt);
            events.emit('auth', attempt);
            if (attempt.accepted) {
                return callback(null, { user: auth.username });
            }
            if (opts.challengeOnFail && auth.method === 'XOAUTH2') {
                // No `user` + `data`: smtp-server answers 334 <base64 JSON>, then 535.
                return callback(null, {
                    data: { status: '401', schemes: 'bearer', scope: 'https://mail.google.com/' }
                });
            }
            const refusal = opts.authRefusal || { responseCode: 535, message: '5.7.3 Authentication unsuccessful' };
            return callback(smtpError(refusal.responseCode, refusal.message));
        },

        onMailFrom(address, session, callback) {
            mailFromAttempts.push({ address: address.address, args: address.args });
            const refusal = opts.refuseMailFrom ? opts.refuseMailFrom(counters.mailFrom++, address.address, session) : null;
            if (refusal) {
                return callback(smtpError(refusal.responseCode, refusal.message));
            }
            if (opts.sendAsOnly && String(address.address).toLowerCase() !== String(session.user).toLowerCase()) {
                return callback(smtpError(550, '5.7.60 SMTP; Client does not have permissions to send as this sender'));
            }
            callback();
        },

        onRcptTo(address, session, callback) {
            const accepted = !refused.has(String(address.address).toLowerCase());
            rcptAttempts.push({ address: address.address, accepted });
            if (!accepted) {
                return callback(smtpError(550, `5.1.1 <${address.address}>: Recipient address rejected`));
            }
            callback();
        },

        onData(stream, session, callback) {
            events.emit('data-start', { id: session.id });
            const fault = opts.dataFault ? opts.dataFault(counters.data, session) || null : null;
            counters.data += 1;
            if (fault) {
                return injectDataFault(fault, stream, session, callback);
            }
            const chunks = [];
            let answered = false;
            const reply = (err, text) => {
                if (!answered) {
                    answered = true;
                    callback(err, text);
                }
            };
            stream.on('data', chunk => chunks.push(chunk));
            stream.on('error', err => reply(err));
            stream.on('end', async () => {
                if (stream.sizeExceeded) {
                    // smtp-server answers 552 itself; do not record the message
                    return reply(smtpError(552, '5.3.4 Message size exceeds fixed maximum message size'));
                }
                const raw = Buffer.concat(chunks);
                let parsed;
                try {
                    // keepCidLinks: otherwise simpleParser rewrites <img src="cid:..."> into
                    // data: URLs and the parsed html would no longer equal what was sent.
                    parsed = await simpleParser(raw, { keepCidLinks: true });
                } catch (err) {
                    return reply(smtpError(554, `5.6.0 test server could not parse the message: ${err.message}`));
                }
                const message = {
                    envelope: {
                        from: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
                        to: session.envelope.rcptTo.map(r => r.address)
                    },
                    raw,
                    parsed,
                    secure: !!session.secure,
                    user: session.user
                };
                if (opts.dataDelayMs) {
                    await sleep(opts.dataDelayMs);
                }
                // Pushed before the 250 goes out, so a resolved sendMail() always finds it here.
                received.push({ id: session.id, raw, messageId: parsed.messageId || null, at: Date.now(), fault: null });
                messages.push(message);
                events.emit('message', message);
                const queueId = Math.random().toString(36).slice(2, 12).toUpperCase();
                reply(null, `2.6.0 <${queueId}@localhost> [InternalId=${messages.length}] Queued mail for delivery`);
            });
        }
    });

    // Faults for the retry tests. Except for 'tempfail-after-dot' (a 451), the onData callback
    // is never called: the client gets no reply (the connection goes away, or stays silent).
    function destroySession(session) {
        const raw = rawByPort.get(session.remotePort);
        for (const connection of server.connections) {
            if (connection.id === session.id && connection._socket) {
                connection._socket.destroy();
            }
        }
        if (raw) {
            raw.destroy();
        }
    }
    function injectDataFault(fault, stream, session, callback) {
        const sink = [];
        const recordWhole = () => {
            const raw = Buffer.concat(sink);
            const head = raw.subarray(0, Math.min(raw.length, 64 * 1024)).toString('latin1');
            const match = /^message-id:[ \t]*(.*(?:\r\n[ \t].*)*)/im.exec(head.split('\r\n\r\n')[0]);
            received.push({ id: session.id, raw, messageId: match ? match[1].replace(/\r\n/g, '').trim() : null, at: Date.now(), fault });
        };
        stream.on('error', () => {});
        switch (fault) {
            case 'drop-at-data':
                // Synchronously, before smtp-server writes its 354.
                destroySession(session);
                return;
            case 'drop-mid-data': {
                // Nobody reads the stream: backpressure stops the socket, the client's writes
                // fill the buffers and block; then the connection goes away under them.
                const timer = setTimeout(() => destroySession(session), opts.dataFaultDelayMs || 300);
                timer.unref();
                return;
            }
            case 'tempfail-after-dot':
            case 'drop-after-dot':
            case 'no-reply':
                stream.on('data', chunk => sink.push(chunk));
                stream.on('end', () => {
                    recordWhole();
                    events.emit('received', received.at(-1));
                    if (fault === 'drop-after-dot') {
                        destroySession(session);
                    } else if (fault === 'tempfail-after-dot') {
                        callback(smtpError(451, '4.3.0 Temporary server error, please try again later'));
                    }
                });
                return;
            default:
                throw new Error(`unknown dataFault ${fault}`);
        }
    }

    // Raw sockets, so close() can tear down connections a client keeps open (pools).
    const sockets = new Set();
    server.server.on('connection', socket => {
        sockets.add(socket);
        const port = socket.remotePort;
        rawByPort.set(port, socket);
        counters.peak = Math.max(counters.peak, rawByPort.size);
        const release = () => {
            if (rawByPort.get(port) === socket) {
                rawByPort.delete(port);
            }
        };
        socket.once('end', release);
        socket.on('close', () => {
            sockets.delete(socket);
            release();
        });
    });
    // A client dropping the connection mid-handshake emits 'error' on the server;
    // without a listener that would crash the test process.
    const serverErrors = [];
    server.on('error', err => serverErrors.push(err));

    const port = await listenOnLoopback(server, server.server);

    let closed;
    return {
        host: '127.0.0.1',
        port,
        server,
        events,
        messages,
        authAttempts,
        connections,
        rcptAttempts,
        mailFromAttempts,
        serverErrors,
        received,
        get dataCommands() {
            return counters.data;
        },
        get openConnections() {
            return rawByPort.size;
        },
        get peakConnections() {
            return counters.peak;
        },
        get insecureAuth() {
            return authAttempts.some(a => !a.secure);
        },
        close() {
            if (!closed) {
                closed = new Promise(resolve => {
                    server.close(() => resolve());
                    // Do not wait for clients to say QUIT: destroy what is left.
                    setTimeout(() => {
                        for (const socket of sockets) {
                            socket.destroy();
                        }
                    }, 50).unref();
                });
            }
            return closed;
        }
    };
}
