// Configuration is validated synchronously by createTransport() with messages that name
// the exact TAS config path; bad messages are refused before any connection is made,
// and header injection through message fields is impossible.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadTransport, tasConfig, TEST_CLIENT_SECRET, TEST_USER, withoutPath, withPath } from './support/config.mjs';
import { setupTransport } from './support/env.mjs';
import { assertCode, assertNoSecrets, rejection, secretForms } from './support/errors.mjs';
import { closedPort } from './support/token-server.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };

// Nothing listens on these ports: a transport that connected eagerly would fail loudly
// instead of reaching anything outside 127.0.0.1.
const SMTP_PORT = await closedPort();
const TOKEN_PORT = await closedPort();
const valid = () => tasConfig({ smtpPort: SMTP_PORT, tokenUrl: `http://127.0.0.1:${TOKEN_PORT}/test-tenant/oauth2/v2.0/token` });

/** Asserts createTransport(config) throws synchronously an ECONFIG naming `path`. */
function assertConfigError(config, path, extra) {
    let thrown;
    let result;
    try {
        result = createTransport(config);
    } catch (err) {
        thrown = err;
    }
    if (!thrown) {
        // It returned (maybe a Promise, which would make the check asynchronous): clean up, fail.
        Promise.resolve(result && typeof result.close === 'function' ? result.close() : undefined).catch(() => {});
        assert.fail(`createTransport() should throw synchronously for mail.smtp.${path}`);
    }
    assertCode(thrown, 'ECONFIG');
    assert.ok(thrown.message.includes(`mail.smtp.${path}`), `message should name mail.smtp.${path}: ${thrown.message}`);
    assertNoSecrets(thrown, { 'client secret': secretForms(TEST_CLIENT_SECRET) });
    if (extra) {
        extra(thrown);
    }
    return thrown;
}

test('a valid TAS config is accepted and creating a transport does not connect', T, async () => {
    const transport = createTransport(valid());
    assert.equal(typeof transport.sendMail, 'function');
    assert.equal(typeof transport.verify, 'function');
    assert.equal(typeof transport.close, 'function');
    await transport.close();
});

test('grantType may be omitted', T, async () => {
    const transport = createTransport(withoutPath(valid(), 'oauth2.grantType'));
    await transport.close();
});

const REQUIRED = ['host', 'port', 'auth.user', 'oauth2.host', 'oauth2.clientId', 'oauth2.clientSecret', 'oauth2.scope'];

for (const path of REQUIRED) {
    test(`missing mail.smtp.${path} -> ECONFIG naming it`, T, () => {
        assertConfigError(withoutPath(valid(), path), path);
    });
}

for (const path of ['oauth2.clientSecret', 'oauth2.clientId', 'auth.user', 'host']) {
    test(`mail.smtp.${path} set to undefined (unset env var) -> ECONFIG that mentions an environment variable`, T, () => {
        assertConfigError(withPath(valid(), path, undefined), path, err => {
            assert.match(err.message, /environment variable/i);
        });
    });
}

test('mail.smtp.oauth2.clientSecret empty string -> ECONFIG naming it', T, () => {
    assertConfigError(withPath(valid(), 'oauth2.clientSecret', ''), 'oauth2.clientSecret');
});

test('mail.smtp.port "abc" -> ECONFIG with got "abc"', T, () => {
    assertConfigError(withPath(valid(), 'port', 'abc'), 'port', err => {
        assert.ok(err.message.includes('got "abc"'), err.message);
    });
});

for (const port of [70000, 0, -25]) {
    test(`mail.smtp.port ${port} -> ECONFIG`, T, () => {
        assertConfigError(withPath(valid(), 'port', port), 'port');
    });
}

test('mail.smtp.oauth2.grantType "password" -> ECONFIG naming it', T, () => {
    assertConfigError(withPath(valid(), 'oauth2.grantType', 'password'), 'oauth2.grantType');
});

test('plain http token URL to a non-loopback host -> ECONFIG naming mail.smtp.oauth2.host', T, () => {
    assertConfigError(
        withPath(valid(), 'oauth2.host', 'http://login.example.com/test-tenant/oauth2/v2.0/token'),
        'oauth2.host'
    );
});

test('a token URL that is not a URL -> ECONFIG naming mail.smtp.oauth2.host', T, () => {
    assertConfigError(withPath(valid(), 'oauth2.host', 'login.microsoftonline.com tenant token'), 'oauth2.host');
});

for (const url of [
    `https://127.0.0.1:${TOKEN_PORT}/test-tenant/oauth2/v2.0/token`,
    `http://localhost:${TOKEN_PORT}/test-tenant/oauth2/v2.0/token`
]) {
    test(`token URL ${url.replace(/:\d+/, ':PORT')} is accepted`, T, async () => {
        const transport = createTransport(withPath(valid(), 'oauth2.host', url));
        await transport.close();
    });
}

// --- message validation and header injection: these need the servers -------------

const setup = t => setupTransport(t, createTransport);

for (const field of ['to', 'cc', 'bcc', 'from']) {
    test(`invalid address in ${field} -> EMESSAGE/EENVELOPE naming the field, no connection`, T, async t => {
        const { env, transport } = await setup(t);
        const msg = { from: TEST_USER, to: 'rcpt@example.com', subject: 'invalid', text: 'x' };
        msg[field] = 'not an address';
        const err = await rejection(transport.sendMail(msg));

        assertCode(err, ['EMESSAGE', 'EENVELOPE']);
        assert.match(err.message, new RegExp(`\\b${field}\\b`, 'i'), `message should name the field: ${err.message}`);
        assert.equal(env.smtp.connections.length, 0, 'refused before connecting');
        assert.equal(env.smtp.messages.length, 0);
    });
}

// Unfolded header section of a raw message.
const rawHeaders = raw => raw.toString('utf8').split(/\r?\n\r?\n/)[0].replace(/\r?\n[ \t]+/g, ' ');

/**
 * Sends `msg` (which tries to smuggle "Bcc: evil@example.com" into the headers) and
 * asserts that either it was refused with EMESSAGE, or it arrived without a Bcc header
 * and without evil@example.com ever being a recipient.
 */
async function assertNoInjection(t, msg) {
    const { env, transport } = await setup(t);
    let info;
    try {
        info = await transport.sendMail(msg);
    } catch (err) {
        assertCode(err, 'EMESSAGE');
        assert.equal(env.smtp.messages.length, 0);
    }
    assert.ok(!env.smtp.rcptAttempts.some(r => /evil@example\.com/i.test(r.address)), 'evil@example.com never got a RCPT TO');
    if (info) {
        assert.equal(env.smtp.messages.length, 1);
        const { parsed, raw, envelope } = env.smtp.messages[0];
        assert.deepEqual(envelope.to, ['rcpt@example.com']);
        assert.deepEqual(info.accepted, ['rcpt@example.com']);
        assert.equal(parsed.bcc, undefined);
        assert.equal(parsed.headers.has('bcc'), false);
        assert.doesNotMatch(rawHeaders(raw), /^bcc:/im, 'no header line starts with Bcc:');
    }
}

test('CRLF in subject cannot create a Bcc header', T, async t => {
    await assertNoInjection(t, {
        from: TEST_USER,
        to: 'rcpt@example.com',
        subject: 'Hello\r\nBcc: evil@example.com',
        text: 'x'
    });
});

test('CRLF in a custom header value cannot create a Bcc header', T, async t => {
    await assertNoInjection(t, {
        from: TEST_USER,
        to: 'rcpt@example.com',
        subject: 'custom header',
        headers: { 'X-Custom': 'v\r\nBcc: evil@example.com' },
        text: 'x'
    });
});

test('CRLF in a display name cannot create a Bcc header', T, async t => {
    await assertNoInjection(t, {
        from: TEST_USER,
        to: { name: 'Innocent\r\nBcc: evil@example.com', address: 'rcpt@example.com' },
        subject: 'display name',
        text: 'x'
    });
});
