// SMTP authentication and transport security: refusals, challenges, STARTTLS being
// mandatory, certificate verification, the basic (PLAIN/LOGIN) path, and timeouts.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { makeExpiredPki, makeUntrustedPki } from './support/certs.mjs';
import {
    basicConfig,
    loadTransport,
    TEST_CLIENT_SECRET,
    TEST_PASSWORD,
    TEST_USER,
    withoutPath
} from './support/config.mjs';
import { closeWithin, startEnv } from './support/env.mjs';
import { assertCode, assertNoSecrets, rejection, secretForms } from './support/errors.mjs';
import { startSmtpServer } from './support/smtp-server.mjs';
import { closedPort } from './support/token-server.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };

const mail = { from: TEST_USER, to: 'rcpt@example.com', subject: 'auth test', text: 'x' };

async function setup(t, { smtp, config } = {}) {
    const env = await startEnv({ smtp });
    t.after(() => env.close());
    const cfg = typeof config === 'function' ? config(env.config()) : env.config(config);
    const transport = env.track(createTransport(cfg));
    return { env, transport };
}

/** A PLAIN/LOGIN server and a basic-auth transport to it, both closed after the test. */
async function setupBasic(t, smtpOpts, configOverrides = {}) {
    const smtp = await startSmtpServer({ user: TEST_USER, authMethods: ['PLAIN', 'LOGIN'], ...smtpOpts });
    const transport = createTransport(basicConfig({ smtpPort: smtp.port, ...configOverrides }));
    t.after(async () => {
        try {
            await closeWithin(transport);
        } finally {
            await smtp.close();
        }
    });
    return { smtp, transport };
}

/** Every form in which the access tokens handed out so far could leak. */
const tokenForms = env => env.token.issued.flatMap(token => secretForms(token, { user: TEST_USER, kind: 'token' }));

test('token refused with 535 5.7.3 -> EAUTH with responseCode, command and hint; token not exposed', T, async t => {
    const { env, transport } = await setup(t, { smtp: { acceptAuth: () => false } });
    const err = await rejection(transport.sendMail(mail));

    assertCode(err, 'EAUTH');
    assert.equal(err.responseCode, 535);
    assert.equal(typeof err.response, 'string');
    assert.match(err.response, /^535 5\.7\.3 Authentication unsuccessful/);
    assert.equal(typeof err.command, 'string');
    assert.match(err.command, /AUTH/i);
    assert.equal(typeof err.hint, 'string');
    assert.ok(err.hint.length > 0);

    assert.equal(env.smtp.authAttempts.length >= 1, true, 'the token was presented');
    assert.equal(env.token.issued.length >= 1, true);
    assertNoSecrets(err, { 'access token': tokenForms(env), 'client secret': secretForms(TEST_CLIENT_SECRET) });
    assert.equal(env.smtp.messages.length, 0);
});

test('XOAUTH2 refused with a 334 JSON challenge -> EAUTH carrying the decoded JSON, no hang', { timeout: 10000 }, async t => {
    const { env, transport } = await setup(t, { smtp: { acceptAuth: () => false, challengeOnFail: true } });
    const err = await rejection(transport.sendMail(mail));

    assertCode(err, 'EAUTH');
    assert.ok(err.message.includes('"status":"401"'), `message should carry the decoded challenge: ${err.message}`);
    assert.equal(env.smtp.authAttempts.length >= 1, true);
    assertNoSecrets(err, { 'access token': tokenForms(env), 'client secret': secretForms(TEST_CLIENT_SECRET) });
    assert.equal(env.smtp.messages.length, 0);
});

test('server without STARTTLS -> ETLS and the token is never sent', T, async t => {
    // The server would even accept AUTH in plaintext: only the client can refuse.
    const { env, transport } = await setup(t, { smtp: { noStartTls: true } });
    const err = await rejection(transport.sendMail(mail));

    assertCode(err, 'ETLS');
    assert.equal(env.smtp.authAttempts.length, 0, 'no AUTH at all, in particular not in plaintext');
    assert.equal(env.smtp.insecureAuth, false);
    assert.equal(env.smtp.messages.length, 0);
    assertNoSecrets(err, { 'access token': tokenForms(env), 'client secret': secretForms(TEST_CLIENT_SECRET) });
});

test('verify() against a server without STARTTLS -> ETLS as well', T, async t => {
    const { env, transport } = await setup(t, { smtp: { noStartTls: true } });
    const err = await rejection(transport.verify());
    assertCode(err, 'ETLS');
    assert.equal(env.smtp.authAttempts.length, 0);
});

test('certificate from a CA the client does not trust (no tls.ca) -> ETLS', T, async t => {
    // The test CA is not in the system roots, so without tls.ca nothing vouches for the server.
    const { env, transport } = await setup(t, { config: cfg => withoutPath(cfg, 'tls.ca') });
    const err = await rejection(transport.sendMail(mail));
    assertCode(err, 'ETLS');
    assert.equal(env.smtp.authAttempts.length, 0);
    assert.equal(env.smtp.messages.length, 0);
});

test('certificate signed by a different CA than tls.ca -> ETLS', T, async t => {
    const { env, transport } = await setup(t, { smtp: { pki: makeUntrustedPki() } });
    const err = await rejection(transport.sendMail(mail));
    assertCode(err, 'ETLS');
    assert.equal(env.smtp.authAttempts.length, 0);
});

test('expired certificate from the trusted CA -> ETLS', T, async t => {
    const { env, transport } = await setup(t, { smtp: { pki: makeExpiredPki() } });
    const err = await rejection(transport.sendMail(mail));
    assertCode(err, 'ETLS');
    assert.equal(env.smtp.authAttempts.length, 0);
});

test('certificate for another name than tls.servername -> ETLS', T, async t => {
    const { env, transport } = await setup(t, { config: { tls: { servername: 'smtp.office365.com' } } });
    const err = await rejection(transport.sendMail(mail));
    assertCode(err, 'ETLS');
    assert.equal(env.smtp.authAttempts.length, 0);
});

test('the configured servername is sent as SNI', T, async t => {
    const { env, transport } = await setup(t);
    await transport.sendMail(mail);
    assert.equal(env.smtp.connections.at(-1).secure, true);
    assert.equal(env.smtp.connections.at(-1).servername, 'localhost');
});

test('basic auth path (no type, auth.user + auth.pass) delivers over STARTTLS', T, async t => {
    const { smtp, transport } = await setupBasic(t, { password: TEST_PASSWORD });

    const info = await transport.sendMail(mail);
    assert.equal(smtp.messages.length, 1);
    assert.deepEqual(smtp.messages[0].envelope.to, ['rcpt@example.com']);
    assert.equal(info.messageId, smtp.messages[0].parsed.messageId);
    assert.ok(smtp.authAttempts.length >= 1);
    const attempt = smtp.authAttempts.at(-1);
    assert.ok(['PLAIN', 'LOGIN'].includes(attempt.method), `method ${attempt.method}`);
    assert.equal(attempt.username, TEST_USER);
    assert.equal(attempt.password, TEST_PASSWORD);
    assert.equal(attempt.secure, true, 'password only after STARTTLS');
    assert.equal(smtp.insecureAuth, false);
});

test('basic auth with a wrong password -> EAUTH 535, password not exposed', T, async t => {
    const { smtp, transport } = await setupBasic(t, { password: 'the-right-one' }, { pass: TEST_PASSWORD });

    const err = await rejection(transport.sendMail(mail));
    assertCode(err, 'EAUTH');
    assert.equal(err.responseCode, 535);
    assert.ok(smtp.authAttempts.length >= 1);
    assertNoSecrets(err, { password: secretForms(TEST_PASSWORD, { user: TEST_USER, kind: 'password' }) });
    assert.equal(smtp.messages.length, 0);
});

test('basic auth path refuses a server without STARTTLS -> ETLS, password never sent', T, async t => {
    const { smtp, transport } = await setupBasic(t, { password: TEST_PASSWORD, noStartTls: true });

    const err = await rejection(transport.sendMail(mail));
    assertCode(err, 'ETLS');
    assert.equal(smtp.authAttempts.length, 0);
    assertNoSecrets(err, { password: secretForms(TEST_PASSWORD, { user: TEST_USER, kind: 'password' }) });
});

test('SMTP port closed -> ECONNECTION, quickly', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    const port = await closedPort();
    const transport = env.track(createTransport(env.config({ port })));
    const started = Date.now();
    const err = await rejection(transport.sendMail(mail));
    assertCode(err, 'ECONNECTION');
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
});

test('server that accepts but never greets -> ETIMEDOUT (or ECONNECTION) within the configured timeouts', T, async t => {
    const sockets = new Set();
    const silent = net.createServer(socket => {
        sockets.add(socket); // accept, say nothing
        socket.on('error', () => {});
        socket.on('close', () => sockets.delete(socket));
    });
    await new Promise(resolve => silent.listen(0, '127.0.0.1', resolve));
    t.after(
        () =>
            new Promise(resolve => {
                for (const socket of sockets) {
                    socket.destroy();
                }
                silent.close(() => resolve());
            })
    );
    const env = await startEnv();
    t.after(() => env.close());
    const transport = env.track(
        createTransport(
            env.config({ port: silent.address().port, connectionTimeout: 1000, greetingTimeout: 1000, socketTimeout: 1000 })
        )
    );

    const started = Date.now();
    const err = await rejection(transport.sendMail(mail));
    const elapsed = Date.now() - started;
    assertCode(err, ['ETIMEDOUT', 'ECONNECTION']);
    assert.ok(elapsed >= 800, `gave up after ${elapsed} ms, before the greeting timeout`);
    assert.ok(elapsed < 8000, `took ${elapsed} ms with 1 s timeouts`);
});
