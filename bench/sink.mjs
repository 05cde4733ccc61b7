// The benchmark's far end, run by bench/run.mjs as a separate process (child_process.fork):
//
// - an Entra-shaped token endpoint (client_credentials) that counts its requests, and
// - an SMTP sink (npm smtp-server): STARTTLS with a throwaway CA, PIPELINING, AUTH XOAUTH2
//   that accepts exactly the tokens the endpoint issued, and an onData that only drains the
//   message and counts it.
//
// Everything listens on 127.0.0.1. The parent talks to it over the IPC channel:
//   -> { cmd: 'stats' }            <- { type: 'stats', tokenRequests, messages, bytes, connections, auths, authFailures }
//   -> { cmd: 'reset' }            <- { type: 'reset' }   (zeroes the counters)
//   -> { cmd: 'close' }            closes both servers and exits
// On start it sends { type: 'ready', smtpPort, tokenUrl, caFile, caPem, user, clientId, clientSecret, scope }.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { makeTestPki } from '../__test__/support/certs.mjs';

const USER = 'bench@example.com';
const CLIENT_ID = '0b5e5c1e-bench-4000-8000-000000000001';
const CLIENT_SECRET = crypto.randomBytes(24).toString('base64url');
const SCOPE = 'https://outlook.office365.com/.default';
const TENANT = 'bench-tenant';
const TOKEN_LIFETIME = 3599;

const counters = { tokenRequests: 0, messages: 0, bytes: 0, connections: 0, auths: 0, authFailures: 0 };
const liveTokens = new Map(); // token -> expiresAt

// --- token endpoint
const tokenServer = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', chunk => chunks.push(chunk));
    req.on('end', () => {
        counters.tokenRequests += 1;
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
        const send = (status, body) => {
            const payload = JSON.stringify(body);
            res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(payload) });
            res.end(payload);
        };
        if (req.method !== 'POST' || req.url !== `/${TENANT}/oauth2/v2.0/token`) {
            return send(404, { error: 'not_found' });
        }
        if (form.get('client_id') !== CLIENT_ID || form.get('client_secret') !== CLIENT_SECRET) {
            return send(401, { error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided.' });
        }
        if (form.get('scope') !== SCOPE || form.get('grant_type') !== 'client_credentials') {
            return send(400, { error: 'invalid_request', error_description: 'bad scope or grant' });
        }
        const token = `bench.${crypto.randomBytes(24).toString('base64url')}`;
        liveTokens.set(token, Date.now() + TOKEN_LIFETIME * 1000);
        send(200, { token_type: 'Bearer', expires_in: TOKEN_LIFETIME, ext_expires_in: TOKEN_LIFETIME, access_token: token });
    });
});

// --- SMTP sink
const pki = makeTestPki();
const smtp = new SMTPServer({
    name: 'localhost',
    banner: 'bench sink',
    key: pki.keyPem,
    cert: pki.certPem,
    authMethods: ['XOAUTH2'],
    authOptional: false,
    size: 0,
    logger: false,
    disableReverseLookup: true,
    socketTimeout: 5 * 60 * 1000,
    closeTimeout: 200,
    onConnect(session, callback) {
        counters.connections += 1;
        callback();
    },
    onAuth(auth, session, callback) {
        counters.auths += 1;
        const expiresAt = liveTokens.get(auth.accessToken);
        if (auth.method === 'XOAUTH2' && auth.username === USER && expiresAt && expiresAt > Date.now()) {
            return callback(null, { user: auth.username });
        }
        counters.authFailures += 1;
        const err = new Error('5.7.3 Authentication unsuccessful');
        err.responseCode = 535;
        callback(err);
    },
    onData(stream, session, callback) {
        let bytes = 0;
        stream.on('data', chunk => {
            bytes += chunk.length;
        });
        stream.on('end', () => {
            counters.messages += 1;
            counters.bytes += bytes;
            callback(null, `2.6.0 <${counters.messages}@bench> Queued mail for delivery`);
        });
    }
});
smtp.on('error', () => {}); // a client dropping mid-handshake is not the sink's problem

const sockets = new Set();
smtp.server.on('connection', socket => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
});

const listen = (server, target) =>
    new Promise((resolve, reject) => {
        target.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve(target.address().port));
    });

const tokenPort = await listen(tokenServer, tokenServer);
const smtpPort = await listen(smtp, smtp.server);
const caFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'smtp-bench-')), 'ca.pem');
fs.writeFileSync(caFile, pki.caPem);

function close() {
    fs.rmSync(path.dirname(caFile), { recursive: true, force: true });
    tokenServer.close();
    tokenServer.closeAllConnections();
    smtp.close(() => process.exit(0));
    for (const socket of sockets) {
        socket.destroy();
    }
    setTimeout(() => process.exit(0), 1000).unref();
}

process.on('message', message => {
    if (message.cmd === 'stats') {
        process.send({ type: 'stats', ...counters });
    } else if (message.cmd === 'reset') {
        for (const key of Object.keys(counters)) {
            counters[key] = 0;
        }
        process.send({ type: 'reset' });
    } else if (message.cmd === 'close') {
        close();
    }
});
// The parent went away: do not linger.
process.on('disconnect', close);

process.send({
    type: 'ready',
    smtpPort,
    tokenUrl: `http://127.0.0.1:${tokenPort}/${TENANT}/oauth2/v2.0/token`,
    caFile,
    caPem: pki.caPem,
    user: USER,
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    scope: SCOPE
});
