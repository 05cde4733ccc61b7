// Hardening, part 3: faults are survived. Each fault of the token endpoint or the SMTP server
// has a defined outcome (the error code, what was retried), a check that no credential went
// where it must not (no token request before TLS is up, no AUTH outside TLS, no secret to an
// endpoint whose certificate failed), and a check that the process is still healthy: a send
// through a good server, from the same process, succeeds afterwards.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { makeExpiredPki, makeServerPki, makeUntrustedPki } from './support/certs.mjs';
import { loadTransport, TEST_CLIENT_SECRET, TEST_USER, withoutPath } from './support/config.mjs';
import { closeWithin, setupTransport, startEnv } from './support/env.mjs';
import { assertCode, assertNoSecrets, rejection, secretForms } from './support/errors.mjs';
import { startHttpsTokenFront } from './support/https-token.mjs';
import { CLOSE, SILENT, startScriptedSmtp } from './support/scripted-smtp.mjs';
import { closedPort, entraErrorBody, sendJson } from './support/token-server.mjs';
import { sleep, timed } from './support/wait.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 30000 };
const FAST = { connectionTimeout: 1500, greetingTimeout: 1500, socketTimeout: 1500, maxRetries: 0 };

const mail = subject => ({ from: TEST_USER, to: 'rcpt@example.com', subject, text: `body of ${subject}` });

// One good token endpoint + SMTP server for the whole file: after every fault a send through
// it, from this same process, must succeed.
let good;
before(async () => {
    good = await startEnv();
});
after(() => good.close());

async function assertHealthy() {
    const transport = createTransport(good.config(FAST));
    try {
        const delivered = good.smtp.messages.length;
        const info = await transport.sendMail(mail('health check'));
        assert.deepEqual(info.accepted, ['rcpt@example.com']);
        assert.equal(good.smtp.messages.length, delivered + 1, 'the health-check message arrived');
    } finally {
        await closeWithin(transport);
    }
    const { rss, heapUsed } = process.memoryUsage();
    assert.ok(rss < 1024 * 1024 * 1024, `rss ${rss}`);
    assert.ok(heapUsed < 512 * 1024 * 1024, `heapUsed ${heapUsed}`);
}

const setup = (t, { config, ...servers } = {}) =>
    setupTransport(t, createTransport, { ...servers, config: { ...FAST, ...config } });

/** A scripted SMTP server (accepting the tokens of an env's token server) and a transport to it. */
async function scripted(t, serverOpts = {}, config = {}) {
    const env = await startEnv();
    t.after(() => env.close());
    const smtp = await startScriptedSmtp({ validTokens: () => env.token.liveTokens(), ...serverOpts });
    t.after(() => smtp.close());
    const transport = env.track(createTransport(env.config({ ...FAST, port: smtp.port, ...config })));
    return { env, smtp, transport };
}

const noSecret = (err, env) =>
    assertNoSecrets(err, {
        'client secret': secretForms(TEST_CLIENT_SECRET),
        'access token': env ? env.token.issued.flatMap(tok => secretForms(tok, { user: TEST_USER })) : []
    });

/** No AUTH command outside TLS, and (when `none`) no AUTH at all. */
function assertAuthOnlyOverTls(smtp, { none = false } = {}) {
    const auths = smtp.commands().filter(c => /^AUTH\b/i.test(c.line));
    assert.ok(auths.every(c => c.secure), 'an AUTH command was sent over plaintext');
    if (none) {
        assert.equal(auths.length, 0, 'no AUTH at all');
        assert.ok(!smtp.rawReceived().toString('latin1').toUpperCase().includes('AUTH'), 'no AUTH byte on the wire');
    }
}

// ---------------------------------------------------------------------------------------
// Token endpoint faults

test('token endpoint: connection refused -> EOAUTH2; no AUTH; healthy afterwards', T, async t => {
    const port = await closedPort();
    const { env, transport } = await setup(t, { config: { oauth2: { host: `http://127.0.0.1:${port}/test-tenant/oauth2/v2.0/token` } } });
    const err = await rejection(transport.sendMail(mail('token refused connection')));
    assertCode(err, 'EOAUTH2');
    assert.match(err.message, /token request/);
    assert.equal(env.smtp.authAttempts.length, 0);
    assert.equal(env.smtp.messages.length, 0);
    noSecret(err, env);
    await assertHealthy();
});

test('token endpoint: no answer within oauth2.timeout 300 -> EOAUTH2 "timed out", bounded; no AUTH; healthy afterwards', T, async t => {
    const { env, transport } = await setup(t, { config: { oauth2: { timeout: 300 } } });
    env.token.setHandler(() => {}); // never answers
    const { error: err, ms } = await timed(() => transport.sendMail(mail('token timeout')));
    assertCode(err, 'EOAUTH2');
    assert.match(err.message, /timed out after 300 ms/);
    assert.ok(ms < 5000, `took ${ms} ms`);
    assert.ok(env.token.requests.length >= 1 && env.token.requests.length <= 3, `${env.token.requests.length} requests`);
    assert.equal(env.smtp.authAttempts.length, 0);
    noSecret(err, env);
    await assertHealthy();
});

test('token endpoint: https with an untrusted certificate -> EOAUTH2; the secret never reached it; healthy afterwards', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    const front = await startHttpsTokenFront(env.token, makeUntrustedPki());
    t.after(() => front.close());
    const transport = env.track(createTransport(env.config({ ...FAST, oauth2: { host: front.url } })));
    const err = await rejection(transport.sendMail(mail('token tls')));
    assertCode(err, 'EOAUTH2');
    assert.equal(front.requests.length, 0, 'no HTTP request completed the handshake');
    assert.ok(front.tlsErrors.length >= 1);
    assert.equal(env.smtp.authAttempts.length, 0);
    noSecret(err, env);
    await assertHealthy();
});

test('token endpoint: 500 -> EOAUTH2 with statusCode 500 after 3 attempts; no AUTH; healthy afterwards', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler((req, form, res) => sendJson(res, 500, entraErrorBody('server_error', 90033, 'A transient error has occurred.')));
    const err = await rejection(transport.sendMail(mail('token 500')));
    assertCode(err, 'EOAUTH2');
    assert.equal(err.statusCode, 500);
    assert.equal(env.token.requests.length, 3);
    assert.equal(env.smtp.authAttempts.length, 0);
    noSecret(err, env);
    await assertHealthy();
});

test('token endpoint: 429 -> EOAUTH2 with statusCode 429 and retryAfter, not retried at once; healthy afterwards', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler((req, form, res) =>
        sendJson(res, 429, entraErrorBody('temporarily_unavailable', 50196, 'The server encountered a client request loop.'), { 'Retry-After': '1' })
    );
    const err = await rejection(transport.sendMail(mail('token 429')));
    assertCode(err, 'EOAUTH2');
    assert.equal(err.statusCode, 429);
    assert.equal(err.retryAfter, 1);
    assert.equal(env.token.requests.length, 1);
    assert.equal(env.smtp.authAttempts.length, 0);
    noSecret(err, env);
    await assertHealthy();
});

test('token endpoint: 200 with a body that is not JSON -> EOAUTH2; no AUTH; healthy afterwards', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler((req, form, res) => {
        res.writeHead(200, { 'Content-Type': 'text/html' });
        res.end('<html><body>Sign in to your account</body></html>');
    });
    const err = await rejection(transport.sendMail(mail('token html')));
    assertCode(err, 'EOAUTH2');
    assert.equal(err.statusCode, 200);
    assert.equal(env.smtp.authAttempts.length, 0);
    noSecret(err, env);
    await assertHealthy();
});

test('token endpoint: JSON without access_token -> EOAUTH2 naming access_token; no AUTH; healthy afterwards', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler((req, form, res) => sendJson(res, 200, { token_type: 'Bearer', expires_in: 3599 }));
    const err = await rejection(transport.sendMail(mail('token missing')));
    assertCode(err, 'EOAUTH2');
    assert.match(err.message, /access_token/);
    assert.equal(env.smtp.authAttempts.length, 0);
    noSecret(err, env);
    await assertHealthy();
});

for (const [label, lifetime] of [['expires_in missing', undefined], ['expires_in 0', 0]]) {
    test(`token endpoint: ${label} -> each token is used for one send and not cached: the next send asks again`, T, async t => {
        const { env, transport } = await setup(t);
        env.token.setHandler((req, form, res) => {
            const token = `opaque-${env.token.issued.length + 1}`;
            env.token.issued.push(token);
            env.token.grants.push({ token, issuedAt: Date.now(), expiresAt: Date.now() + 60000 });
            const body = { token_type: 'Bearer', access_token: token };
            if (lifetime !== undefined) {
                body.expires_in = lifetime;
            }
            sendJson(res, 200, body);
        });
        await transport.sendMail(mail(`${label} 1`));
        await transport.sendMail(mail(`${label} 2`));
        await transport.sendMail(mail(`${label} 3`));
        assert.equal(env.smtp.messages.length, 3);
        assert.equal(env.token.requests.length, 3, 'one token request per send');
        assert.deepEqual(
            env.smtp.authAttempts.map(a => a.accessToken),
            ['opaque-1', 'opaque-2', 'opaque-3'],
            'each token was used once'
        );
        await assertHealthy();
    });
}

// ---------------------------------------------------------------------------------------
// SMTP faults

test('SMTP: connection refused -> ECONNECTION; no token requested; healthy afterwards', T, async t => {
    const port = await closedPort();
    const { env, transport } = await setup(t, { config: { port } });
    const err = await rejection(transport.sendMail(mail('smtp refused')));
    assertCode(err, 'ECONNECTION');
    assert.equal(env.token.requests.length, 0, 'the secret was not even sent to the token endpoint');
    noSecret(err, env);
    await assertHealthy();
});

test('SMTP: no greeting within greetingTimeout 1500 -> ETIMEDOUT; no token requested; healthy afterwards', T, async t => {
    const { env, smtp, transport } = await scripted(t, { on: { greeting: () => SILENT } });
    const { error: err, ms } = await timed(() => transport.sendMail(mail('no greeting')));
    assertCode(err, 'ETIMEDOUT');
    assert.equal(err.command, 'CONN');
    assert.ok(ms >= 1300 && ms < 5000, `gave up after ${ms} ms`);
    assert.equal(env.token.requests.length, 0);
    assertAuthOnlyOverTls(smtp, { none: true });
    await assertHealthy();
});

test('SMTP: greeting 554 -> ECONNECTION with responseCode 554, nothing else sent; healthy afterwards', T, async t => {
    const { env, smtp, transport } = await scripted(t, { on: { greeting: () => '554 5.7.1 No SMTP service here' } });
    const err = await rejection(transport.sendMail(mail('greeting 554')));
    assertCode(err, 'ECONNECTION');
    assert.equal(err.responseCode, 554);
    assert.equal(env.token.requests.length, 0);
    assert.ok(!smtp.commands().some(c => /^(EHLO|HELO|AUTH|MAIL)/i.test(c.line)), 'no EHLO/AUTH/MAIL after a 554 greeting');
    await assertHealthy();
});

test('SMTP: EHLO rejected -> HELO fallback -> no STARTTLS -> ETLS; no AUTH, no token requested; healthy afterwards', T, async t => {
    for (const refusal of ['502 5.5.1 EHLO not implemented', '500 5.5.2 Syntax error, command unrecognized']) {
        const { env, smtp, transport } = await scripted(t, { on: { EHLO: () => refusal } });
        const err = await rejection(transport.sendMail(mail('ehlo rejected')));
        assertCode(err, 'ETLS');
        const verbs = smtp.commands().map(c => c.line.split(' ')[0].toUpperCase());
        assert.deepEqual(verbs.slice(0, 2), ['EHLO', 'HELO'], `commands: ${verbs.join(', ')}`);
        assert.ok(!verbs.includes('STARTTLS'));
        assertAuthOnlyOverTls(smtp, { none: true });
        assert.equal(env.token.requests.length, 0);
    }
    await assertHealthy();
});

test('SMTP: STARTTLS refused (454) -> ETLS with responseCode 454; no AUTH; healthy afterwards', T, async t => {
    const { env, smtp, transport } = await scripted(t, { on: { STARTTLS: () => '454 4.7.0 TLS not available' } });
    const err = await rejection(transport.sendMail(mail('starttls refused')));
    assertCode(err, 'ETLS');
    assert.equal(err.responseCode, 454);
    assertAuthOnlyOverTls(smtp, { none: true });
    assert.equal(env.token.requests.length, 0);
    await assertHealthy();
});

for (const [label, pki, configFor] of [
    ['wrong host name', makeServerPki(['mail.example.net']), cfg => withoutPath(cfg, 'tls.servername')],
    ['expired certificate', makeExpiredPki(), cfg => cfg],
    ['unknown CA', makeUntrustedPki(), cfg => cfg]
]) {
    test(`SMTP: TLS handshake failure (${label}) -> ETLS; no AUTH, no token requested; healthy afterwards`, T, async t => {
        const env = await startEnv({ smtp: { pki } });
        t.after(() => env.close());
        const transport = env.track(createTransport(configFor(env.config(FAST))));
        const err = await rejection(transport.sendMail(mail(label)));
        assertCode(err, 'ETLS');
        assert.equal(env.smtp.authAttempts.length, 0);
        assert.equal(env.token.requests.length, 0);
        noSecret(err, env);
        await assertHealthy();
    });
}

test('SMTP: AUTH 535 -> one retry with a fresh token, then EAUTH 535; AUTH only over TLS; healthy afterwards', T, async t => {
    const { env, transport } = await setup(t, { smtp: { acceptAuth: () => false } });
    const err = await rejection(transport.sendMail(mail('auth 535')));
    assertCode(err, 'EAUTH');
    assert.equal(err.responseCode, 535);
    assert.equal(env.smtp.authAttempts.length, 2);
    assert.equal(env.token.requests.length, 2, 'a fresh token for the second try');
    assert.ok(env.smtp.authAttempts.every(a => a.secure));
    assert.equal(env.smtp.messages.length, 0);
    noSecret(err, env);
    await assertHealthy();
});

test('SMTP: AUTH 454 (temporary) -> retried maxRetries times on new connections, then EAUTH 454; healthy afterwards', T, async t => {
    const { env, transport } = await setup(t, {
        smtp: { acceptAuth: () => false, authRefusal: { responseCode: 454, message: '4.7.0 Temporary authentication failure' } },
        config: { maxRetries: 2 }
    });
    const err = await rejection(transport.sendMail(mail('auth 454')));
    assertCode(err, 'EAUTH');
    assert.equal(err.responseCode, 454);
    assert.equal(err.permanent, false);
    assert.equal(err.attempts, 3);
    assert.equal(env.smtp.authAttempts.length, 3, '1 try + 2 retries');
    assert.equal(env.smtp.connections.length, 3, 'each retry on a new connection');
    assert.equal(env.token.requests.length, 1, 'the cached token is reused: 454 is not a refusal of the token');
    assert.ok(env.smtp.authAttempts.every(a => a.secure));
    noSecret(err, env);
    await assertHealthy();
});

test('SMTP: MAIL FROM refused -> EENVELOPE 550, command MAIL FROM, no DATA; healthy afterwards', T, async t => {
    const { env, transport } = await setup(t, { smtp: { sendAsOnly: true } });
    let dataStarts = 0;
    env.smtp.events.on('data-start', () => (dataStarts += 1));
    const err = await rejection(transport.sendMail({ ...mail('mail from refused'), from: 'someone.else@example.com' }));
    assertCode(err, 'EENVELOPE');
    assert.equal(err.responseCode, 550);
    assert.equal(err.command, 'MAIL FROM');
    assert.equal(dataStarts, 0);
    assert.equal(env.smtp.messages.length, 0);
    await assertHealthy();
});

test('SMTP: RCPT partially refused -> resolves, rejected lists the refused recipient, the others get the message; healthy afterwards', T, async t => {
    const { env, transport } = await setup(t, { smtp: { refuseRecipients: ['gone@example.com'] } });
    const info = await transport.sendMail({ ...mail('partial'), to: ['rcpt@example.com', 'gone@example.com', 'other@example.com'] });
    assert.deepEqual(info.accepted, ['rcpt@example.com', 'other@example.com']);
    assert.deepEqual(info.rejected, ['gone@example.com']);
    assert.equal(info.rejectedErrors[0].responseCode, 550);
    assert.equal(info.rejectedErrors[0].code, 'EENVELOPE');
    assert.deepEqual(env.smtp.messages[0].envelope.to, ['rcpt@example.com', 'other@example.com']);
    await assertHealthy();
});

test('SMTP: 552 after the message (too large) -> EMESSAGE 552, not resent; healthy afterwards', T, async t => {
    const { smtp, transport } = await scripted(t, { on: { DOT: () => '552 5.3.4 Message size exceeds fixed maximum message size' } }, { maxRetries: 2 });
    const err = await rejection(transport.sendMail(mail('552')));
    assertCode(err, 'EMESSAGE');
    assert.equal(err.responseCode, 552);
    assert.equal(err.permanent, true);
    assert.equal(smtp.dataStarts, 1, 'sent once, not retried');
    assert.equal(smtp.connections.length, 1);
    assertAuthOnlyOverTls(smtp);
    await assertHealthy();
});

test('SMTP: 552 in answer to DATA -> EMESSAGE 552, no content sent; healthy afterwards', T, async t => {
    const { smtp, transport } = await scripted(t, { on: { DATA: () => '552 5.3.4 Message too big for system' } }, { maxRetries: 2 });
    const err = await rejection(transport.sendMail(mail('552 at DATA')));
    assertCode(err, 'EMESSAGE');
    assert.equal(err.responseCode, 552);
    assert.equal(smtp.connections.length, 1);
    assert.equal(smtp.messages.length, 0);
    await assertHealthy();
});

test('SMTP: connection closed during DATA (before the final ".") -> ECONNECTION, command DATA, nothing delivered; healthy afterwards', T, async t => {
    const { smtp, transport } = await scripted(t, { on: { dataChunk: () => CLOSE } });
    // Large enough that the client is still writing when the server hangs up.
    const big = { ...mail('closed during data'), attachments: [{ filename: 'big.bin', content: Buffer.alloc(8 * 1024 * 1024, 7) }] };
    const err = await rejection(transport.sendMail(big));
    assertCode(err, 'ECONNECTION');
    assert.equal(err.command, 'DATA');
    assert.equal(smtp.messages.length, 0);
    assertAuthOnlyOverTls(smtp);
    await assertHealthy();
});

test('SMTP: connection closed right after the final "." without a reply -> EUNKNOWN_DELIVERY, not resent; healthy afterwards', T, async t => {
    const { smtp, transport } = await scripted(t, { on: { DOT: () => CLOSE } }, { maxRetries: 2 });
    const err = await rejection(transport.sendMail(mail('closed after dot')));
    assertCode(err, 'EUNKNOWN_DELIVERY');
    assert.equal(smtp.dataStarts, 1);
    assert.equal(smtp.connections.length, 1, 'not resent (it may have been delivered)');
    await sleep(300);
    assert.equal(smtp.connections.length, 1);
    await assertHealthy();
});

test('SMTP: server silent after the final "." -> EUNKNOWN_DELIVERY after socketTimeout 1500, not resent; healthy afterwards', T, async t => {
    const { smtp, transport } = await scripted(t, { on: { DOT: () => SILENT } }, { maxRetries: 2 });
    const { error: err, ms } = await timed(() => transport.sendMail(mail('silent after dot')));
    assertCode(err, 'EUNKNOWN_DELIVERY');
    assert.match(err.message, /1500 ms/);
    assert.ok(ms >= 1300 && ms < 6000, `${ms} ms`);
    assert.equal(smtp.dataStarts, 1);
    assert.equal(smtp.connections.length, 1, 'not resent');
    await sleep(300);
    assert.equal(smtp.connections.length, 1);
    assertAuthOnlyOverTls(smtp);
    await assertHealthy();
});
