// Hardening, part 1: secrets never leak, and no credential ever crosses an unencrypted or
// unverified connection.
//
// Secrets: a canary client secret, canary access tokens (the token server issues them), a
// canary password and a private key are searched for, raw and encoded (percent-encoded,
// base64, inside the base64 XOAUTH2 / PLAIN strings), in errors and all their properties,
// util.inspect / console.log / JSON.stringify of the transport, every logger line including
// the `debug: true` SMTP transcript, and the stdout/stderr of a child process that runs a
// whole send with `logger: true, debug: true`.
//
// Transport security: STARTTLS stripped, refused (454) or followed by injected data; TLS
// certificates (unknown CA, expired, wrong name) for SMTP and for an https token endpoint;
// rejectUnauthorized: false and its warning; tls.minVersion; the https-only token URL; an
// endless token response; endless SMTP reply lines and continuation lines.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Console } from 'node:console';
import { PassThrough } from 'node:stream';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import util from 'node:util';
import { test } from 'node:test';
import {
    assertNoLeak,
    CANARY_PASSWORD,
    CANARY_SECRET,
    CANARY_TOKEN,
    canaryForms,
    captureLogger,
    findLeaks,
    issueCanaryTokens
} from './support/canary.mjs';
import { makeClientCertificate, makeExpiredPki, makeServerPki, makeTestPki, makeUntrustedPki } from './support/certs.mjs';
import { basicConfig, loadTransport, TEST_USER, withoutPath } from './support/config.mjs';
import { closeWithin, startEnv } from './support/env.mjs';
import { assertCode, exposedText, rejection } from './support/errors.mjs';
import { startHttpsTokenFront } from './support/https-token.mjs';
import { SILENT, startScriptedSmtp } from './support/scripted-smtp.mjs';
import { startSmtpServer } from './support/smtp-server.mjs';
import { sendJson } from './support/token-server.mjs';
import { sleep } from './support/wait.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 30000 };
const FAST = { connectionTimeout: 1500, greetingTimeout: 1500, socketTimeout: 1500, maxRetries: 0 };

const mail = subject => ({ from: TEST_USER, to: 'rcpt@example.com', subject, text: `body of ${subject}` });

/** An env whose token server issues canary tokens for CANARY_SECRET; `config()` uses that secret. */
async function canaryEnv(t, { smtp, token } = {}) {
    const env = await startEnv({ smtp, token: { clientSecret: CANARY_SECRET, ...token } });
    t.after(() => env.close());
    issueCanaryTokens(env);
    return { env, config: (overrides = {}) => env.config({ clientSecret: CANARY_SECRET, ...overrides }) };
}

/** What console.log(value) would print. */
function consoleLogOf(value) {
    const out = new PassThrough();
    let text = '';
    out.on('data', chunk => (text += chunk));
    new Console({ stdout: out, stderr: out }).log(value);
    return text;
}

/** Every way an application could print a transport. */
function printedTransport(transport) {
    return [
        util.inspect(transport),
        util.inspect(transport, { showHidden: true, depth: Infinity, getters: true }),
        util.inspect(transport, { showHidden: true, depth: Infinity, customInspect: false }),
        consoleLogOf(transport),
        JSON.stringify(transport),
        String(transport),
        exposedText(transport)
    ].join('\n');
}

// ---------------------------------------------------------------------------------------
// Secrets

test('secrets: util.inspect, console.log and JSON.stringify of a transport show no secret, before and after a send and after close', T, async t => {
    const { env, config } = await canaryEnv(t);
    const transport = env.track(createTransport(config()));
    assertNoLeak(printedTransport(transport), canaryForms(env), 'the printed transport (new)');
    await transport.sendMail(mail('inspect'));
    assert.ok(env.token.issued[0].startsWith(CANARY_TOKEN), 'the canary token was issued and used');
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, env.token.issued[0]);
    assertNoLeak(printedTransport(transport), canaryForms(env), 'the printed transport (token cached)');
    await transport.close();
    assertNoLeak(printedTransport(transport), canaryForms(env), 'the printed transport (closed)');
    // What it does show: where mail goes, as whom.
    assert.match(util.inspect(transport), /127\.0\.0\.1/);
    assert.match(JSON.stringify(transport), new RegExp(TEST_USER.replace('.', '\\.')));
});

test('secrets: the printed transport shows no password (basic auth) and no private key (certificate credentials)', T, async () => {
    const basic = createTransport(basicConfig({ smtpPort: 1, pass: CANARY_PASSWORD }));
    assertNoLeak(printedTransport(basic), canaryForms(null), 'the printed basic-auth transport');
    await basic.close();

    const cert = makeClientCertificate();
    const keyBody = cert.keyPkcs8Pem.split('\n').filter(l => l && !l.startsWith('-----'));
    const withKey = createTransport({
        type: 'oauth2',
        host: '127.0.0.1',
        port: 1,
        auth: { user: TEST_USER },
        oauth2: {
            host: 'http://127.0.0.1:1/test-tenant/oauth2/v2.0/token',
            clientId: 'x',
            scope: 'https://outlook.office365.com/.default',
            privateKey: cert.keyPkcs8Pem,
            certificate: cert.certPem
        }
    });
    assertNoLeak(printedTransport(withKey), { 'private key': keyBody }, 'the printed certificate-credential transport');
    await withKey.close();
});

test('secrets: every logger line, with the debug: true SMTP transcript, is free of secrets; AUTH shows as "AUTH XOAUTH2 <redacted>"', T, async t => {
    const { env, config } = await canaryEnv(t);
    const log = captureLogger();
    const transport = env.track(createTransport(config({ logger: log.logger, debug: true })));
    await transport.verify();
    await transport.sendMail(mail('logged'));
    await log.settle();

    const text = log.text();
    assert.ok(log.lines.some(l => l.level === 'debug' && l.message === 'C: AUTH XOAUTH2 <redacted>'), `no redacted AUTH line in:\n${text}`);
    assert.ok(log.lines.some(l => /^C: MAIL FROM:/.test(l.message)), 'the transcript was logged');
    assert.ok(log.lines.some(l => l.level === 'info' && /access token/.test(l.message)), 'the new token was logged (without its value)');
    assert.ok(env.token.issued.length >= 1);
    assertNoLeak(text, canaryForms(env), 'the logger lines');
});

test('secrets: logger lines of failing sends (token refused twice, retries) are free of secrets', T, async t => {
    const { env, config } = await canaryEnv(t, { smtp: { acceptAuth: () => false } });
    const log = captureLogger();
    const transport = env.track(createTransport(config({ logger: log.logger, debug: true, maxRetries: 1 })));
    const err = await rejection(transport.sendMail(mail('refused')));
    assertCode(err, 'EAUTH');
    await log.settle();
    assert.equal(env.token.issued.length, 2, 'a fresh token was tried after the first 535');
    assertNoLeak(log.text(), canaryForms(env), 'the logger lines');
    assertNoLeak(exposedText(err), canaryForms(env), 'the EAUTH error');
});

test('secrets: basic auth logs "AUTH PLAIN <redacted>" (LOGIN: "<username redacted>", "<password redacted>") and never the password', T, async t => {
    for (const method of ['PLAIN', 'LOGIN']) {
        const smtp = await startSmtpServer({ user: TEST_USER, password: CANARY_PASSWORD, authMethods: [method] });
        t.after(() => smtp.close());
        const log = captureLogger();
        const transport = createTransport(basicConfig({ smtpPort: smtp.port, pass: CANARY_PASSWORD, logger: log.logger, debug: true }));
        await transport.sendMail(mail(`basic ${method}`));
        await closeWithin(transport);
        await log.settle();
        assert.equal(smtp.authAttempts.at(-1).password, CANARY_PASSWORD, `${method}: the password did reach the server`);
        const expected = method === 'PLAIN' ? ['C: AUTH PLAIN <redacted>'] : ['C: <username redacted>', 'C: <password redacted>'];
        for (const line of expected) {
            assert.ok(log.lines.some(l => l.message === line), `${method}: no "${line}" in:\n${log.text()}`);
        }
        assertNoLeak(log.text(), canaryForms(null), `the logger lines (${method})`);

        // A wrong password: the error carries neither the password given nor its encodings.
        const wrong = createTransport(basicConfig({ smtpPort: smtp.port, pass: `${CANARY_PASSWORD}-wrong`, maxRetries: 0 }));
        const err = await rejection(wrong.sendMail(mail('wrong password')));
        await closeWithin(wrong);
        assertCode(err, 'EAUTH');
        assertNoLeak(exposedText(err), canaryForms(null), `the EAUTH error (${method})`);
    }
});

test('secrets: errors of every kind (EOAUTH2, ETLS, ECONNECTION, EAUTH, EENVELOPE, EMESSAGE, ETIMEDOUT, EPROTOCOL, EUNKNOWN_DELIVERY, closed transport) carry no secret in any field', T, async t => {
    const { env, config } = await canaryEnv(t, { smtp: { refuseRecipients: ['refused@example.com'] } });
    const errors = [];
    const collect = async (label, promise, code) => {
        const err = await rejection(promise);
        assertCode(err, code);
        errors.push([label, err]);
    };
    const transport = env.track(createTransport(config(FAST)));
    await transport.sendMail(mail('first')); // a cached canary token from here on

    await collect('all recipients refused', transport.sendMail({ ...mail('x'), to: 'refused@example.com' }), 'EENVELOPE');
    await collect('invalid message', transport.sendMail({ ...mail('x'), to: 'not an address' }), 'EMESSAGE');
    const wrongId = env.track(createTransport(config({ ...FAST, oauth2: { clientId: 'unknown-client' } })));
    await collect('token refused', wrongId.sendMail(mail('x')), 'EOAUTH2');
    const untrusted = env.track(createTransport(withoutPath(config(FAST), 'tls.ca')));
    await collect('untrusted certificate', untrusted.sendMail(mail('x')), 'ETLS');
    const refusedAuth = await startSmtpServer({ user: TEST_USER, acceptAuth: () => false });
    t.after(() => refusedAuth.close());
    const eauth = env.track(createTransport(config({ ...FAST, port: refusedAuth.port })));
    await collect('token refused by SMTP', eauth.sendMail(mail('x')), 'EAUTH');
    assert.ok(refusedAuth.authAttempts.length >= 1, 'a canary token was presented');
    const closed = createTransport(config(FAST));
    await closed.close();
    await collect('closed transport', closed.sendMail(mail('x')), 'ECONNECTION');
    for (const [label, on, code] of [
        ['no greeting', { greeting: () => SILENT }, 'ETIMEDOUT'],
        ['endless reply line', { greeting: conn => (conn.flood(Buffer.alloc(64 * 1024, 'x'), { prefix: '220 ' }), SILENT) }, 'EPROTOCOL'],
        ['no reply after the message', { DOT: () => SILENT }, 'EUNKNOWN_DELIVERY']
    ]) {
        const faulty = await startScriptedSmtp({ validTokens: () => env.token.liveTokens(), on });
        t.after(() => faulty.close());
        const transport2 = env.track(createTransport(config({ ...FAST, port: faulty.port })));
        await collect(label, transport2.sendMail(mail(label)), code);
    }

    for (const [label, err] of errors) {
        assertNoLeak(exposedText(err), canaryForms(env), `the error "${label}"`);
    }
});

test('secrets: a token endpoint that echoes the request body (percent-encoded secret) in its error -> the error holds no form of the secret', T, async t => {
    const { env, config } = await canaryEnv(t);
    const transport = env.track(createTransport(config(FAST)));
    const echo = [
        ['text/plain 400', (res, body) => {
            res.writeHead(400, { 'Content-Type': 'text/plain' });
            res.end(`bad request: ${body}`);
        }],
        ['JSON error_description', (res, body) => sendJson(res, 400, { error: 'invalid_request', error_description: `AADSTS900144: could not parse ${body}` })],
        ['JSON error_description, raw secret', (res, body) =>
            sendJson(res, 401, { error: 'invalid_client', error_description: `AADSTS7000215: wrong secret ${new URLSearchParams(body).get('client_secret')}` })]
    ];
    const leaks = [];
    for (const [label, answer] of echo) {
        env.token.setHandler((req, form, res) => answer(res, env.token.requests.at(-1).body));
        const err = await rejection(transport.sendMail(mail(label)));
        assertCode(err, 'EOAUTH2');
        assert.ok(env.token.requests.at(-1).body.includes(new URLSearchParams({ s: CANARY_SECRET }).toString().slice(2)), 'the echoed body held the secret');
        leaks.push(...findLeaks(exposedText(err), canaryForms(env), `the EOAUTH2 error (${label})`));
    }
    assert.deepEqual(leaks, []);
});

test('secrets: an SMTP server that echoes the AUTH argument in its 535 -> neither the error nor the debug transcript holds the token', T, async t => {
    const { env, config } = await canaryEnv(t);
    const echo = await startScriptedSmtp({
        on: { AUTH: (conn, line) => `535 5.7.8 Authentication failed for: ${line.split(' ').slice(2).join(' ')}` }
    });
    t.after(() => echo.close());
    const log = captureLogger();
    const transport = env.track(createTransport(config({ ...FAST, port: echo.port, logger: log.logger, debug: true })));
    const err = await rejection(transport.sendMail(mail('echo')));
    await log.settle();
    assertCode(err, 'EAUTH');
    assert.ok(echo.auths.length >= 1 && echo.auths.every(a => a.secure), 'AUTH was sent, over TLS only');
    assert.ok(echo.auths[0].token.startsWith(CANARY_TOKEN));
    const leaks = [
        ...findLeaks(exposedText(err), canaryForms(env), 'the EAUTH error'),
        ...findLeaks(log.text(), canaryForms(env), 'the debug transcript')
    ];
    assert.deepEqual(leaks, []);
});

test('secrets: certificate credentials -> the private key and the signed client assertion appear in no error, log line or inspection', T, async t => {
    const { env, config } = await canaryEnv(t);
    const cert = makeClientCertificate();
    const keyBody = cert.keyPkcs8Pem.split('\n').filter(l => l && !l.startsWith('-----'));
    // The endpoint refuses the assertion and echoes it back.
    env.token.setHandler((req, form, res) =>
        sendJson(res, 401, { error: 'invalid_client', error_description: `AADSTS700027: assertion ${form.client_assertion} rejected` })
    );
    const log = captureLogger();
    const oauth2 = { ...withoutPath(config(), 'oauth2.clientSecret').oauth2, privateKey: cert.keyPkcs8Pem, certificate: cert.certPem };
    const transport = env.track(createTransport({ ...config({ ...FAST, logger: log.logger, debug: true }), oauth2 }));
    const err = await rejection(transport.sendMail(mail('assertion')));
    await log.settle();
    assertCode(err, 'EOAUTH2');
    const assertion = env.token.requests.at(-1).form.client_assertion;
    assert.ok(assertion && assertion.split('.').length === 3, 'a signed assertion was sent');
    const secrets = { 'private key': keyBody, 'client assertion': [assertion, assertion.split('.')[2]] };
    assertNoLeak(exposedText(err), secrets, 'the EOAUTH2 error');
    assertNoLeak(log.text(), secrets, 'the logger lines');
    assertNoLeak(printedTransport(transport), secrets, 'the printed transport');
});

const CHILD_LOGGED = fileURLToPath(new URL('./support/child-logged.cjs', import.meta.url));

test('secrets: a child process sending with logger: true and debug: true prints no secret or token on stdout or stderr', T, async t => {
    const { env, config } = await canaryEnv(t, { smtp: { refuseRecipients: ['refused@example.com'] } });
    const child = spawn(process.execPath, [CHILD_LOGGED], {
        env: { ...process.env, SMTP_OAUTH_TEST_CONFIG: JSON.stringify(config()), RUST_BACKTRACE: '1' },
        stdio: ['ignore', 'pipe', 'pipe']
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', chunk => (stdout += chunk));
    child.stderr.on('data', chunk => (stderr += chunk));
    const guard = setTimeout(() => child.kill('SIGKILL'), 20000);
    const code = await new Promise(resolve => child.on('close', resolve));
    clearTimeout(guard);

    assert.equal(code, 0, `child failed (code ${code}); stderr:\n${stderr}`);
    assert.match(stdout, /^DONE$/m);
    assert.match(stdout, /^SENT /m);
    assert.match(stderr, /AUTH XOAUTH2 <redacted>/, 'the transcript was printed (logger: true, debug: true)');
    assert.match(stderr, /TOKEN ERROR/);
    assert.match(stderr, /SEND ERROR/);
    assert.ok(env.token.issued.length >= 1 && env.token.issued.every(tok => tok.startsWith(CANARY_TOKEN)), 'canary tokens were used');
    assert.ok(env.smtp.authAttempts.some(a => a.accepted && a.accessToken.startsWith(CANARY_TOKEN)));
    assertNoLeak(stdout, canaryForms(env), "the child's stdout");
    assertNoLeak(stderr, canaryForms(env), "the child's stderr");
});

// ---------------------------------------------------------------------------------------
// Transport security: no AUTH without TLS

/** A scripted SMTP server (closed after the test) and an env for the token side. */
async function scripted(t, opts) {
    const env = await startEnv();
    t.after(() => env.close());
    const smtp = await startScriptedSmtp({ validTokens: () => env.token.liveTokens(), ...opts });
    t.after(() => smtp.close());
    return { env, smtp };
}

const sawAuth = smtp => smtp.rawReceived().toString('latin1').toUpperCase().includes('AUTH');

test('STARTTLS stripped from EHLO (AUTH still offered and plaintext AUTH accepted) -> ETLS; no AUTH on the wire, no token requested', T, async t => {
    const { env, smtp } = await scripted(t, { starttls: false });
    const transport = env.track(createTransport(env.config({ ...FAST, port: smtp.port })));
    const err = await rejection(transport.sendMail(mail('stripped')));
    assertCode(err, 'ETLS');
    assert.match(err.message, /STARTTLS/);
    assert.equal(sawAuth(smtp), false, 'no AUTH byte reached the server');
    assert.equal(env.token.requests.length, 0, 'no token was even requested');
    assert.equal(smtp.dataStarts, 0);

    const basic = createTransport(basicConfig({ smtpPort: smtp.port, pass: CANARY_PASSWORD, ...FAST }));
    const basicErr = await rejection(basic.sendMail(mail('stripped basic')));
    await closeWithin(basic);
    assertCode(basicErr, 'ETLS');
    assert.equal(sawAuth(smtp), false, 'no AUTH PLAIN/LOGIN either');
    assert.ok(!smtp.rawReceived().toString('latin1').includes(Buffer.from(CANARY_PASSWORD).toString('base64')));
});

test('STARTTLS answered "454 4.7.0 TLS not available" -> ETLS with responseCode 454; no AUTH, no token requested', T, async t => {
    const { env, smtp } = await scripted(t, { on: { STARTTLS: () => '454 4.7.0 TLS not available due to temporary reason' } });
    const transport = env.track(createTransport(env.config({ ...FAST, port: smtp.port })));
    const err = await rejection(transport.sendMail(mail('454')));
    assertCode(err, 'ETLS');
    assert.equal(err.responseCode, 454);
    assert.equal(sawAuth(smtp), false);
    assert.equal(env.token.requests.length, 0);
});

test('data injected after "220 Go ahead" and before the TLS handshake (STARTTLS injection) -> ETLS; no AUTH', T, async t => {
    const { env, smtp } = await scripted(t, { on: { STARTTLS: () => '220 2.0.0 Go ahead\r\n250-injected\r\n250 AUTH PLAIN' } });
    const transport = env.track(createTransport(env.config({ ...FAST, port: smtp.port })));
    const err = await rejection(transport.sendMail(mail('injection')));
    assertCode(err, 'ETLS');
    assert.equal(smtp.auths.length, 0);
    assert.equal(env.token.requests.length, 0);
});

for (const [label, smtpOpts, configFor] of [
    ['a certificate from an unknown CA', { pki: makeUntrustedPki() }, cfg => cfg],
    ['no tls.ca (the test CA is not a system root)', {}, cfg => withoutPath(cfg, 'tls.ca')],
    ['an expired certificate', { pki: makeExpiredPki() }, cfg => cfg],
    ['a certificate for another host name', { pki: makeServerPki(['mail.example.net']) }, cfg => withoutPath(cfg, 'tls.servername')]
]) {
    test(`SMTP certificates are verified by default: ${label} -> ETLS; no AUTH, no token requested`, T, async t => {
        const env = await startEnv({ smtp: smtpOpts });
        t.after(() => env.close());
        const transport = env.track(createTransport(configFor(env.config(FAST))));
        for (const attempt of [() => transport.sendMail(mail(label)), () => transport.verify()]) {
            const err = await rejection(attempt());
            assertCode(err, 'ETLS');
        }
        assert.equal(env.smtp.authAttempts.length, 0);
        assert.equal(env.token.requests.length, 0, 'the token is requested only once TLS is up');
        assert.equal(env.smtp.messages.length, 0);
    });
}

/** Servers whose SMTP certificate no client trusts, and the process warnings during the test `t`. */
async function untrustedServerAndWarnings(t) {
    const env = await startEnv({ smtp: { pki: makeUntrustedPki() } });
    t.after(() => env.close());
    const warnings = [];
    const onWarning = w => warnings.push(w);
    process.on('warning', onWarning);
    t.after(() => process.off('warning', onWarning));
    return { env, warnings };
}

test('rejectUnauthorized: false without a logger -> one process SecurityWarning, however many transports', T, async t => {
    const { env, warnings } = await untrustedServerAndWarnings(t);
    const config = env.config({ ...FAST, tls: { rejectUnauthorized: false } });
    const first = env.track(createTransport(config));
    const second = env.track(createTransport(config));
    await first.sendMail(mail('insecure 1'));
    await second.sendMail(mail('insecure 2'));
    await sleep(50);
    const security = warnings.filter(w => w.name === 'SecurityWarning');
    assert.equal(security.length, 1, `SecurityWarnings: ${security.map(w => w.message).join(' | ')}`);
    assert.match(security[0].message, /rejectUnauthorized/);
    assert.equal(env.smtp.messages.length, 2, 'the untrusted certificate was accepted');
});

test('rejectUnauthorized: false with a logger -> delivered to an untrusted certificate, one logger.warn for the transport, no process warning', T, async t => {
    const { env, warnings } = await untrustedServerAndWarnings(t);
    const log = captureLogger();
    const transport = env.track(createTransport(env.config({ ...FAST, tls: { rejectUnauthorized: false }, logger: log.logger })));
    await transport.sendMail(mail('insecure a'));
    await transport.sendMail(mail('insecure b'));
    await log.settle();
    assert.equal(env.smtp.messages.length, 2);
    const warns = log.lines.filter(l => l.level === 'warn' && /rejectUnauthorized/.test(l.message));
    assert.equal(warns.length, 1, `warn lines: ${JSON.stringify(log.lines.filter(l => l.level === 'warn'))}`);
    assert.equal(warnings.filter(w => w.name === 'SecurityWarning').length, 0);
});

test("tls.minVersion 'TLSv1.3' -> delivered over TLS 1.3; against a TLS-1.2-only server -> ETLS, no AUTH", T, async t => {
    const { env, smtp } = await scripted(t);
    const transport = env.track(createTransport(env.config({ ...FAST, port: smtp.port, tls: { minVersion: 'TLSv1.3' } })));
    await transport.sendMail(mail('tls13'));
    assert.equal(smtp.messages.length, 1);
    assert.equal(smtp.connections.at(-1).protocol, 'TLSv1.3');

    const old = await startScriptedSmtp({ validTokens: () => env.token.liveTokens(), tlsOptions: { maxVersion: 'TLSv1.2' } });
    t.after(() => old.close());
    const strict = env.track(createTransport(env.config({ ...FAST, port: old.port, tls: { minVersion: 'TLSv1.3' } })));
    assertCode(await rejection(strict.sendMail(mail('tls13 vs 1.2'))), 'ETLS');
    assert.equal(old.auths.length, 0);
    // The default floor is TLS 1.2: the same server is fine without minVersion.
    const lenient = env.track(createTransport(env.config({ ...FAST, port: old.port })));
    await lenient.sendMail(mail('tls12'));
    assert.equal(old.connections.at(-1).protocol, 'TLSv1.2');
    assert.ok(old.auths.every(a => a.secure));
});

test('a server that only speaks TLS 1.0/1.1 -> ETLS (never negotiated down), no AUTH', T, async t => {
    const legacy = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' };
    // Sanity: the server really offers TLS 1.1 to a client that accepts it.
    const pki = makeTestPki();
    const probe = tls.createServer({ key: pki.keyPem, cert: pki.certPem, ...legacy }, socket => socket.end());
    await new Promise(resolve => probe.listen(0, '127.0.0.1', resolve));
    const negotiated = await new Promise((resolve, reject) => {
        const client = tls.connect({ port: probe.address().port, host: '127.0.0.1', ca: pki.caPem, servername: 'localhost', ...legacy });
        client.on('secureConnect', () => {
            resolve(client.getProtocol());
            client.destroy();
        });
        client.on('error', reject);
    });
    await new Promise(resolve => probe.close(resolve));
    assert.equal(negotiated, 'TLSv1.1');

    const { env, smtp } = await scripted(t, { tlsOptions: legacy });
    const transport = env.track(createTransport(env.config({ ...FAST, port: smtp.port })));
    assertCode(await rejection(transport.sendMail(mail('legacy tls'))), 'ETLS');
    assert.equal(smtp.auths.length, 0);
    assert.equal(env.token.requests.length, 0);
});

test("tls.minVersion below TLSv1.2 ('TLSv1', 'TLSv1.1', 'SSLv3') or unknown -> ECONFIG naming mail.smtp.tls.minVersion", T, () => {
    for (const minVersion of ['TLSv1', 'TLSv1.1', 'SSLv3', 'tls1.3', 13]) {
        const err = (() => {
            try {
                createTransport({ ...basicConfig({ smtpPort: 25 }), tls: { minVersion } });
            } catch (e) {
                return e;
            }
            return assert.fail(`minVersion ${minVersion} was accepted`);
        })();
        assertCode(err, 'ECONFIG');
        assert.match(err.message, /mail\.smtp\.tls\.minVersion/);
    }
    for (const minVersion of ['TLSv1.2', 'TLSv1.3']) {
        createTransport({ ...basicConfig({ smtpPort: 25 }), tls: { minVersion } }).close();
    }
});

test('the token URL must be https://, except on loopback -> ECONFIG naming mail.smtp.oauth2.host (or .cloud)', T, () => {
    const config = host => ({
        type: 'oauth2',
        host: 'smtp.example.com',
        port: 587,
        auth: { user: TEST_USER },
        oauth2: { host, clientId: 'id', clientSecret: CANARY_SECRET, scope: 'https://outlook.office365.com/.default' }
    });
    const refused = [
        'http://login.microsoftonline.com/t/oauth2/v2.0/token',
        'http://127.0.0.1.nip.io/t/oauth2/v2.0/token',
        'http://localhost.example.com/t/oauth2/v2.0/token',
        'http://10.0.0.1/t/oauth2/v2.0/token',
        'ftp://login.microsoftonline.com/t',
        'file:///etc/passwd',
        'login.microsoftonline.com/t/oauth2/v2.0/token'
    ];
    for (const host of refused) {
        let err;
        try {
            createTransport(config(host));
        } catch (e) {
            err = e;
        }
        assert.ok(err, `${host} was accepted`);
        assertCode(err, 'ECONFIG');
        assert.match(err.message, /mail\.smtp\.oauth2\.host/);
        assertNoLeak(exposedText(err), canaryForms(null), 'the ECONFIG error');
    }
    for (const host of ['https://login.microsoftonline.com/t/oauth2/v2.0/token', 'http://127.0.0.1:8080/t/oauth2/v2.0/token', 'http://localhost/t/oauth2/v2.0/token', 'http://[::1]:9/t/oauth2/v2.0/token']) {
        createTransport(config(host)).close();
    }
    let err;
    try {
        const { host: _tokenUrl, ...oauth2 } = config('x').oauth2;
        createTransport({ ...config('x'), oauth2: { ...oauth2, tenantId: 'contoso', cloud: 'http://login.example.com' } });
    } catch (e) {
        err = e;
    }
    assert.ok(err, 'a plain-http authority URL was accepted');
    assertCode(err, 'ECONFIG');
    assert.match(err.message, /mail\.smtp\.oauth2\.cloud/);
});

test('an https token endpoint is verified: trusted CA (oauth2.ca) -> delivered; unknown CA or expired -> EOAUTH2 and the secret never reaches it', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    const good = await startHttpsTokenFront(env.token, makeTestPki());
    t.after(() => good.close());
    // The token client trusts the test CA through oauth2.ca only (tls.ca is for SMTP).
    const ok = env.track(createTransport(env.config({ ...FAST, oauth2: { host: good.url, ca: makeTestPki().caPem } })));
    await ok.sendMail(mail('https token endpoint'));
    assert.equal(good.requests.length, 1);
    assert.equal(env.smtp.messages.length, 1);

    for (const [label, pki] of [['unknown CA', makeUntrustedPki()], ['expired', makeExpiredPki()]]) {
        const bad = await startHttpsTokenFront(env.token, pki);
        t.after(() => bad.close());
        const transport = env.track(createTransport(env.config({ ...FAST, oauth2: { host: bad.url, ca: makeTestPki().caPem } })));
        const err = await rejection(transport.sendMail(mail(label)));
        assertCode(err, 'EOAUTH2');
        assert.equal(bad.requests.length, 0, `${label}: no request (and so no secret) got through`);
        assert.ok(bad.tlsErrors.length >= 1, `${label}: the client refused the handshake`);
    }
    assert.equal(env.smtp.authAttempts.filter(a => !a.accepted).length, 0);
});

test('a token endpoint answering an endless body (10 MB of JSON whitespace) -> EOAUTH2 naming the size limit, quickly, memory bounded', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    let written = 0;
    env.token.setHandler((req, form, res) => {
        res.on('error', () => {});
        res.writeHead(200, { 'Content-Type': 'application/json' });
        const chunk = Buffer.alloc(64 * 1024, ' ');
        const pump = () => {
            while (written < 10 * 1024 * 1024 && !res.destroyed) {
                written += chunk.length;
                if (!res.write(chunk)) {
                    res.once('drain', pump);
                    return;
                }
            }
            res.end('{}');
        };
        pump();
    });
    const rssBefore = process.memoryUsage().rss;
    const transport = env.track(createTransport(env.config(FAST)));
    const started = Date.now();
    const err = await rejection(transport.sendMail(mail('endless token body')));
    assertCode(err, 'EOAUTH2');
    assert.match(err.message, /exceeds|too large|larger than|limit/i);
    const limit = /(\d{3,}) ?bytes/i.exec(err.message);
    assert.ok(limit, `the limit is stated in bytes: ${err.message}`);
    assert.ok(Number(limit[1]) <= 1024 * 1024, `the limit is at most 1 MiB: ${err.message}`);
    assert.ok(Date.now() - started < 10000);
    assert.ok(process.memoryUsage().rss - rssBefore < 100 * 1024 * 1024, 'memory stayed bounded');
    assert.equal(env.smtp.authAttempts.length, 0);

    env.token.setHandler(null);
    await transport.sendMail(mail('after the endless body'));
    assert.equal(env.smtp.messages.length, 1, 'the same transport works afterwards');
});

test('an SMTP server sending an endless reply line -> EPROTOCOL, no hang, the client stops reading', T, async t => {
    const { env, smtp } = await scripted(t, {
        on: { greeting: conn => (conn.flood(Buffer.alloc(64 * 1024, 'x'), { prefix: '220 ' }), SILENT) }
    });
    const transport = env.track(createTransport(env.config({ ...FAST, port: smtp.port })));
    const started = Date.now();
    const err = await rejection(transport.sendMail(mail('endless line')));
    assertCode(err, ['EPROTOCOL', 'ECONNECTION']);
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
    await sleep(200);
    const conn = smtp.connections[0];
    assert.ok(conn.closedAt, 'the client closed the connection');
    assert.ok(conn.bytesWritten < 32 * 1024 * 1024, `the server could push ${conn.bytesWritten} bytes: the client kept reading`);
    assert.equal(env.token.requests.length, 0);
});

test('an SMTP server sending thousands of continuation lines (EHLO) -> EPROTOCOL, no hang', T, async t => {
    for (const [label, ehlo] of [
        ['5000 lines', () => [...Array.from({ length: 5000 }, (_, i) => `250-X-FILLER-${i}`), '250 OK']],
        ['endless', conn => (conn.flood(Buffer.from('250-X-FILLER\r\n'.repeat(4096)), { prefix: '250-localhost\r\n' }), SILENT)]
    ]) {
        const { env, smtp } = await scripted(t, { on: { EHLO: ehlo } });
        const transport = env.track(createTransport(env.config({ ...FAST, port: smtp.port })));
        const started = Date.now();
        const err = await rejection(transport.sendMail(mail(`continuation ${label}`)));
        assertCode(err, ['EPROTOCOL', 'ECONNECTION']);
        assert.ok(Date.now() - started < 5000, `${label}: took ${Date.now() - started} ms`);
        assert.equal(sawAuth(smtp), false);
        await sleep(100);
        assert.ok(smtp.connections[0].closedAt, `${label}: the client closed the connection`);
    }
});
