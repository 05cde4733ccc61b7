// Hardening, part 2: the client secret only ever goes to the real token endpoint, and what
// comes back from it is handled, not trusted.
//
// - The token client always verifies certificates: `tls.rejectUnauthorized: false` and
//   `tls.ca` are SMTP options; only `oauth2.ca` widens the token client's trust.
// - No redirect is followed: a 3xx is EOAUTH2 naming the status and the target host, and a
//   second server behind the redirect never sees a request.
// - A refused credential is remembered (`oauth2.failureCacheSeconds`): a queue of pooled
//   sends behind a wrong secret makes one token request and opens no connection per send.
// - A client secret with surrounding whitespace is trimmed, and the wrong-secret hint says so.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { makeTestPki, makeUntrustedPki } from './support/certs.mjs';
import { loadTransport, TEST_CLIENT_SECRET, TEST_USER } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';
import { startHttpsTokenFront } from './support/https-token.mjs';
import { closerOf, listenOnLoopback, trackSockets } from './support/listen.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 30000 };
const FAST = { connectionTimeout: 1500, greetingTimeout: 1500, socketTimeout: 1500, maxRetries: 0 };

const mail = subject => ({ from: TEST_USER, to: 'rcpt@example.com', subject, text: `body of ${subject}` });

async function envFor(t, opts) {
    const env = await startEnv(opts);
    t.after(() => env.close());
    return env;
}

async function httpsFront(t, env, pki) {
    const front = await startHttpsTokenFront(env.token, pki);
    t.after(() => front.close());
    return front;
}

/** A plain HTTP server on loopback that records every request (and its body) it gets. */
async function startRecorder(t) {
    const requests = [];
    const server = http.createServer((req, res) => {
        let body = '';
        req.on('data', chunk => (body += chunk));
        req.on('end', () => {
            requests.push({ method: req.method, url: req.url, body });
            res.writeHead(200, { 'Content-Type': 'application/json' });
            res.end(JSON.stringify({ token_type: 'Bearer', expires_in: 3599, access_token: 'stolen' }));
        });
    });
    const sockets = trackSockets(server);
    const port = await listenOnLoopback(server);
    const recorder = { port, requests, close: closerOf(server, sockets) };
    t.after(() => recorder.close());
    return recorder;
}

test('tls.rejectUnauthorized: false does not switch off the token endpoint\'s certificate check: untrusted -> EOAUTH2 naming oauth2.ca, no request; with oauth2.ca -> delivered', T, async t => {
    const env = await envFor(t);
    const untrusted = makeUntrustedPki();
    const front = await httpsFront(t, env, untrusted);
    const insecureSmtp = { ...FAST, tls: { rejectUnauthorized: false } };

    const transport = env.track(createTransport(env.config({ ...insecureSmtp, oauth2: { host: front.url } })));
    const err = await rejection(transport.sendMail(mail('unverified token endpoint')));
    assertCode(err, 'EOAUTH2');
    assert.match(err.hint || '', /oauth2\.ca/);
    assert.equal(front.requests.length, 0, 'no request (and so no secret) reached the endpoint');
    assert.ok(front.tlsErrors.length >= 1, 'the client refused the handshake');
    assert.equal(env.smtp.authAttempts.length, 0);

    const widened = env.track(createTransport(env.config({ ...insecureSmtp, oauth2: { host: front.url, ca: untrusted.caPem } })));
    await widened.sendMail(mail('oauth2.ca trusts the inspecting proxy'));
    assert.equal(front.requests.length, 1);
    assert.equal(env.smtp.messages.length, 1);
});

test('tls.ca is for SMTP only: a token endpoint signed by the tls.ca CA -> EOAUTH2, no request; oauth2.ca (string, Buffer or array) -> delivered', T, async t => {
    const env = await envFor(t);
    const pki = makeTestPki();
    const front = await httpsFront(t, env, pki);
    // env.config() puts the test CA in tls.ca (the SMTP server's certificate needs it).
    const transport = env.track(createTransport(env.config({ ...FAST, oauth2: { host: front.url } })));
    const err = await rejection(transport.sendMail(mail('tls.ca only')));
    assertCode(err, 'EOAUTH2');
    assert.equal(front.requests.length, 0);

    for (const ca of [pki.caPem, Buffer.from(pki.caPem), [makeUntrustedPki().caPem, pki.caPem]]) {
        const trusted = env.track(createTransport(env.config({ ...FAST, oauth2: { host: front.url, ca } })));
        await trusted.sendMail(mail('oauth2.ca'));
    }
    assert.equal(front.requests.length, 3);
    assert.equal(env.smtp.messages.length, 3);
});

test('oauth2.ca that is not a certificate -> ECONFIG naming mail.smtp.oauth2.ca', T, async t => {
    const env = await envFor(t);
    for (const [ca, path] of [['not a pem', 'mail.smtp.oauth2.ca'], [[makeTestPki().caPem, 42], 'mail.smtp.oauth2.ca[1]']]) {
        let err;
        try {
            createTransport(env.config({ oauth2: { ca } }));
        } catch (e) {
            err = e;
        }
        assertCode(err, 'ECONFIG');
        assert.ok(err.message.startsWith(`${path} `), err.message);
    }
});

for (const status of [302, 307, 308]) {
    test(`a token endpoint answering ${status} to another server -> EOAUTH2 naming ${status} and the target host; the other server never sees a request`, T, async t => {
        const env = await envFor(t);
        const elsewhere = await startRecorder(t);
        env.token.setHandler((req, form, res) => {
            res.writeHead(status, { Location: `http://localhost:${elsewhere.port}/collect`, 'Content-Length': 0 });
            res.end();
        });
        const transport = env.track(createTransport(env.config(FAST)));
        const err = await rejection(transport.sendMail(mail(`redirect ${status}`)));
        assertCode(err, 'EOAUTH2');
        assert.equal(err.statusCode, status);
        assert.match(err.message, new RegExp(`HTTP ${status} \\(a redirect to localhost\\)`));
        assert.equal(elsewhere.requests.length, 0, 'nothing, and so no secret, was re-sent');
        assert.equal(env.token.requests.length, 1, 'a redirect is not retried');
        assert.equal(env.smtp.authAttempts.length, 0);
    });
}

test('300 queued pooled sends after a wrong secret -> one token request, every send fails fast with the same EOAUTH2, no SMTP connection per send', T, async t => {
    const env = await envFor(t);
    // 60 s: the whole queue is answered from the remembered refusal, however slow the machine.
    const transport = env.track(
        createTransport(env.config({ ...FAST, pool: true, maxConnections: 3, clientSecret: 'wrong-secret', oauth2: { failureCacheSeconds: 60 } }))
    );
    const results = await Promise.allSettled(Array.from({ length: 300 }, (_, i) => transport.sendMail(mail(`queued ${i}`))));
    const failures = results.filter(r => r.status === 'rejected').map(r => r.reason);
    assert.equal(failures.length, 300);
    for (const err of failures) {
        assertCode(err, 'EOAUTH2');
        assert.equal(err.message, failures[0].message);
        assert.equal(err.statusCode, 401);
    }
    assert.equal(env.token.requests.length, 1, 'one token request for the whole queue');
    assert.ok(env.smtp.connections.length <= 3, `${env.smtp.connections.length} SMTP connections (at most maxConnections)`);
    assert.equal(env.smtp.authAttempts.length, 0);
});

test('oauth2.failureCacheSeconds: 0 -> every send asks the token endpoint again', T, async t => {
    const env = await envFor(t);
    const transport = env.track(createTransport(env.config({ ...FAST, clientSecret: 'wrong-secret', oauth2: { failureCacheSeconds: 0 } })));
    for (let i = 0; i < 3; i++) {
        assertCode(await rejection(transport.sendMail(mail(`uncached ${i}`))), 'EOAUTH2');
    }
    assert.equal(env.token.requests.length, 3);
});

test('a client secret with surrounding whitespace (a newline from a file) is trimmed: delivered, the endpoint got the bare secret', T, async t => {
    const env = await envFor(t);
    const transport = env.track(createTransport(env.config({ ...FAST, clientSecret: `  ${TEST_CLIENT_SECRET}\r\n` })));
    await transport.sendMail(mail('trimmed secret'));
    assert.equal(env.token.requests[0].form.client_secret, TEST_CLIENT_SECRET);
    assert.equal(env.smtp.messages.length, 1);
});

test('a wrong client secret with surrounding whitespace -> the AADSTS7000215 hint says whitespace was found and removed', T, async t => {
    const env = await envFor(t);
    const transport = env.track(createTransport(env.config({ ...FAST, clientSecret: 'wrong-secret\n' })));
    const err = await rejection(transport.sendMail(mail('wrong trimmed secret')));
    assertCode(err, 'EOAUTH2');
    assert.match(err.message, /AADSTS7000215/);
    assert.match(err.hint, /whitespace .*found and removed/);
    assert.equal(env.token.requests[0].form.client_secret, 'wrong-secret');

    const plain = env.track(createTransport(env.config({ ...FAST, clientSecret: 'wrong-secret' })));
    const plainErr = await rejection(plain.sendMail(mail('wrong secret')));
    assert.doesNotMatch(plainErr.hint, /whitespace/);
});
