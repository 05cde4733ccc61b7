// nodemailer's fixed auth.accessToken (+ expires): used until it expires or is refused,
// renewed when a way to renew is configured, and a clear error naming what to configure
// when there is none. A refresh token the endpoint rotates is used for the next request.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { makeTestPki } from './support/certs.mjs';
import { loadTransport, TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_SCOPE, TEST_USER } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { assertCode, assertNoSecrets, rejection, secretForms } from './support/errors.mjs';
import { startSmtpServer } from './support/smtp-server.mjs';
import { sendJson } from './support/token-server.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };
const FIXED = 'canary-fixed-access-token.Zt3~9x';
const message = { from: TEST_USER, to: 'rcpt@example.com', subject: 'fixed token', text: 'x' };

let env;
let smtp;
// The tokens the SMTP server accepts (the fixed one, by default).
let accepted = [FIXED];
before(async () => {
    env = await startEnv();
    smtp = await startSmtpServer({ user: TEST_USER, validTokens: () => accepted });
});
after(async () => {
    await env.close();
    await smtp.close();
});

const fixedConfig = auth => ({
    host: '127.0.0.1',
    port: smtp.port,
    tls: { ca: makeTestPki().caPem, servername: 'localhost' },
    auth: { type: 'OAuth2', user: TEST_USER, accessToken: FIXED, ...auth },
});

function logged() {
    const lines = [];
    const logger = Object.fromEntries(['debug', 'info', 'warn', 'error'].map(level => [level, line => lines.push(line)]));
    return { lines, logger };
}

test('a fixed accessToken (expires as ms or a Date) is used for two sends with no token request', T, async () => {
    accepted = [FIXED];
    const requests = env.token.requests.length;
    const attempts = smtp.authAttempts.length;
    for (const expires of [Date.now() + 3600_000, new Date(Date.now() + 3600_000), undefined]) {
        const transport = env.track(createTransport(fixedConfig({ expires })));
        await transport.sendMail(message);
        await transport.sendMail(message);
    }
    assert.equal(env.token.requests.length, requests, 'no token request');
    const used = smtp.authAttempts.slice(attempts);
    assert.equal(used.length, 6);
    assert.ok(used.every(a => a.accepted && a.accessToken === FIXED));
});

test('an expired fixed accessToken without a way to renew: EOAUTH2 with the hint, no AUTH', T, async () => {
    const attempts = smtp.authAttempts.length;
    const transport = env.track(createTransport(fixedConfig({ expires: Date.now() - 1000 })));
    const err = await rejection(transport.sendMail(message));
    assertCode(err, 'EOAUTH2');
    assert.match(err.message, /auth\.accessToken expired at .* and cannot be renewed/);
    assert.match(err.hint, /fixed in the config .* type: 'oauth2' with oauth2: \{ tenantId, clientId, clientSecret \}/);
    assert.equal(smtp.authAttempts.length, attempts, 'no AUTH');
    assertNoSecrets(err, secretForms(FIXED, { user: TEST_USER }));
});

test('a refused fixed accessToken without a way to renew: EAUTH with the hint, then EOAUTH2 without AUTH', T, async () => {
    accepted = [];
    const { lines, logger } = logged();
    const attempts = smtp.authAttempts.length;
    const transport = env.track(createTransport({ ...fixedConfig({}), logger, debug: true }));
    const err = await rejection(transport.sendMail(message));
    assertCode(err, 'EAUTH');
    assert.equal(err.responseCode, 535);
    assert.match(err.hint, /^The access token was fixed in the config \(auth\.accessToken\) and this transport cannot renew it/);
    assert.equal(smtp.authAttempts.length, attempts + 1, 'one AUTH: there is no other token to try');
    const again = await rejection(transport.sendMail(message));
    assertCode(again, 'EOAUTH2');
    assert.match(again.message, /refused by the SMTP server and cannot be renewed/);
    assert.equal(smtp.authAttempts.length, attempts + 1);
    for (const value of [err, again, transport, lines.join('\n')]) {
        assertNoSecrets(value, secretForms(FIXED, { user: TEST_USER }));
    }
    accepted = [FIXED];
});

test('a fixed accessToken with a refreshToken: used first, renewed with the refresh_token grant once refused', T, async () => {
    accepted = [];
    const refreshToken = 'canary-refresh-token-fixed';
    env.token.setHandler((req, form, res, next) => {
        if (form.grant_type !== 'refresh_token' || form.refresh_token !== refreshToken) return next();
        const token = env.token.respondWithToken(res, { accessToken: 'renewed-after-refusal' });
        accepted = [token];
    });
    try {
        const requests = env.token.requests.length;
        const attempts = smtp.authAttempts.length;
        const transport = env.track(createTransport(fixedConfig({
            expires: Date.now() + 3600_000,
            clientId: TEST_CLIENT_ID,
            clientSecret: TEST_CLIENT_SECRET,
            refreshToken,
            accessUrl: env.token.url,
            scope: TEST_SCOPE,
        })));
        await transport.sendMail(message);
        const used = smtp.authAttempts.slice(attempts).map(a => [a.accessToken, a.accepted]);
        assert.deepEqual(used, [[FIXED, false], ['renewed-after-refusal', true]]);
        assert.equal(env.token.requests.length, requests + 1);
        assert.equal(env.token.requests.at(-1).form.grant_type, 'refresh_token');
    } finally {
        env.token.setHandler(null);
        accepted = [FIXED];
    }
});

test('a refresh token the endpoint rotates is sent with the next request, and never shown', T, async () => {
    const original = 'canary-refresh-token-original';
    const sent = [];
    env.token.setHandler((req, form, res, next) => {
        if (form.grant_type !== 'refresh_token') return next();
        sent.push(form.refresh_token);
        const n = sent.length;
        accepted = [`opaque-access-${n}`];
        // expires_in 0: the token is used once, so each send asks again.
        sendJson(res, 200, { token_type: 'Bearer', access_token: `opaque-access-${n}`, expires_in: 0, refresh_token: `canary-rotated-${n}` });
    });
    try {
        const { lines, logger } = logged();
        const transport = env.track(createTransport({
            host: '127.0.0.1',
            port: smtp.port,
            tls: { ca: makeTestPki().caPem, servername: 'localhost' },
            auth: { type: 'OAuth2', user: TEST_USER, clientId: TEST_CLIENT_ID, clientSecret: TEST_CLIENT_SECRET, refreshToken: original, accessUrl: env.token.url, scope: TEST_SCOPE },
            logger,
            debug: true,
        }));
        await transport.sendMail(message);
        await transport.sendMail(message);
        await transport.sendMail(message);
        assert.deepEqual(sent, [original, 'canary-rotated-1', 'canary-rotated-2']);
        assertNoSecrets([transport, lines.join('\n')], ['canary-rotated-1', 'canary-rotated-2', 'canary-rotated-3', original]);
    } finally {
        env.token.setHandler(null);
        accepted = [FIXED];
    }
});
