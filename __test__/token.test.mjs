// The OAuth2 side: one token request per token lifetime, single-flight under
// concurrency, renewal before expiry, and useful, secret-free errors from Entra.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadTransport, TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_SCOPE, TEST_USER } from './support/config.mjs';
import { setupTransport } from './support/env.mjs';
import { assertCode, assertNoSecrets, rejection, secretForms } from './support/errors.mjs';
import { closedPort, entraErrorBody } from './support/token-server.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/** A fresh token server + SMTP server + transport for one test, torn down after it. */
const setup = (t, options) => setupTransport(t, createTransport, options);

const mail = n => ({ from: TEST_USER, to: 'rcpt@example.com', subject: `message ${n}`, text: `body ${n}` });

test('the token request is a client_credentials form POST to the tenant token URL', T, async t => {
    const { env, transport } = await setup(t);
    await transport.sendMail(mail(1));

    assert.equal(env.token.requests.length, 1);
    const req = env.token.requests[0];
    assert.equal(req.method, 'POST');
    assert.equal(req.path, '/test-tenant/oauth2/v2.0/token');
    assert.match(req.headers['content-type'], /^application\/x-www-form-urlencoded/i);
    assert.equal(req.form.grant_type, 'client_credentials');
    assert.equal(req.form.scope, TEST_SCOPE);
    // Entra accepts the credentials in the body or as HTTP Basic; either is fine.
    const sentId = req.form.client_id ?? req.basicAuth?.clientId;
    const sentSecret = req.form.client_secret ?? req.basicAuth?.clientSecret;
    assert.equal(sentId, TEST_CLIENT_ID);
    assert.equal(sentSecret, TEST_CLIENT_SECRET);

    // and the token it got is the one presented to the SMTP server
    assert.equal(env.smtp.authAttempts.length >= 1, true);
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, env.token.issued[0]);
    assert.equal(env.smtp.authAttempts.at(-1).username, TEST_USER);
});

test('20 sequential sends use a single token request', T, async t => {
    const { env, transport } = await setup(t);
    for (let i = 0; i < 20; i++) {
        await transport.sendMail(mail(i));
    }
    assert.equal(env.smtp.messages.length, 20);
    assert.equal(env.token.requests.length, 1, 'the token is cached, not fetched per message');
    assert.equal(env.token.issued.length, 1);
    assert.ok(env.smtp.authAttempts.length >= 1);
    for (const attempt of env.smtp.authAttempts) {
        assert.equal(attempt.accessToken, env.token.issued[0]);
    }
});

test('10 concurrent sends while the token endpoint is slow share one token request', T, async t => {
    const { env, transport } = await setup(t, { token: { delayMs: 300 } });
    const infos = await Promise.all(Array.from({ length: 10 }, (_, i) => transport.sendMail(mail(i))));
    assert.equal(infos.length, 10);
    assert.equal(env.smtp.messages.length, 10);
    assert.equal(env.token.requests.length, 1, 'concurrent callers wait for the one request in flight');
    const subjects = env.smtp.messages.map(m => m.parsed.subject).sort();
    assert.deepEqual(subjects, Array.from({ length: 10 }, (_, i) => `message ${i}`).sort());
});

test('a short-lived token is renewed before use: expires_in 2 -> new token after 2.5 s', T, async t => {
    // The SMTP server only accepts tokens that have not expired (env wiring), so reusing
    // the first token after 2.5 s would fail with EAUTH.
    const { env, transport } = await setup(t, { token: { expiresIn: 2 } });
    await transport.sendMail(mail(1));
    assert.equal(env.token.requests.length, 1);
    const firstToken = env.token.issued[0];

    await sleep(2500);
    await transport.sendMail(mail(2));

    assert.equal(env.token.requests.length, 2, 'a second token was requested');
    assert.equal(env.token.issued.length, 2);
    assert.notEqual(env.token.issued[1], firstToken);
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, env.token.issued[1], 'the new token is used for AUTH');
    assert.equal(env.smtp.authAttempts.at(-1).accepted, true);
    assert.equal(env.smtp.messages.length, 2);
});

test('expires_in sent as a numeric string is understood (token still cached)', T, async t => {
    const { env, transport } = await setup(t, { token: { expiresIn: '3599' } });
    await transport.sendMail(mail(1));
    await transport.sendMail(mail(2));
    await transport.sendMail(mail(3));
    assert.equal(env.smtp.messages.length, 3);
    // If the string were read as 0 / NaN the token would be fetched for every message.
    assert.equal(env.token.requests.length, 1);
});

test('wrong client secret (401 invalid_client, AADSTS7000215) -> EOAUTH2 with a hint, secret not exposed', T, async t => {
    const wrongSecret = 'Wr0ng~Secret.Value_pasted-the-ID-instead';
    const { env, transport } = await setup(t, { config: { oauth2: { clientSecret: wrongSecret } } });
    const err = await rejection(transport.sendMail(mail(1)));

    assertCode(err, 'EOAUTH2');
    assert.equal(err.oauthError, 'invalid_client');
    assert.ok(Array.isArray(err.oauthErrorCodes), 'oauthErrorCodes is an array');
    assert.ok(err.oauthErrorCodes.includes(7000215), `oauthErrorCodes ${JSON.stringify(err.oauthErrorCodes)}`);
    assert.equal(typeof err.response, 'string');
    assert.match(err.response, /AADSTS7000215/);
    assert.equal(typeof err.hint, 'string');
    assert.match(err.hint, /secret/i);
    assert.match(err.hint, /value/i, 'the hint says to use the secret Value (not its ID)');

    assertNoSecrets(err, {
        'configured (wrong) client secret': secretForms(wrongSecret),
        'real client secret': secretForms(TEST_CLIENT_SECRET)
    });
    assert.equal(env.token.requests.length, 1);
    assert.equal(env.smtp.authAttempts.length, 0, 'nothing was presented to the SMTP server');
    assert.equal(env.smtp.messages.length, 0);
});

test('unknown client id (400 unauthorized_client, AADSTS700016) -> EOAUTH2 with a client id / tenant hint', T, async t => {
    const { env, transport } = await setup(t, { config: { oauth2: { clientId: '00000000-0000-0000-0000-000000000000' } } });
    const err = await rejection(transport.sendMail(mail(1)));

    assertCode(err, 'EOAUTH2');
    assert.equal(err.oauthError, 'unauthorized_client');
    assert.ok(err.oauthErrorCodes.includes(700016), `oauthErrorCodes ${JSON.stringify(err.oauthErrorCodes)}`);
    assert.match(err.response, /AADSTS700016/);
    assert.equal(typeof err.hint, 'string');
    assert.match(err.hint, /client.?id|application.?id|tenant/i);
    assertNoSecrets(err, { 'client secret': secretForms(TEST_CLIENT_SECRET) });
    assert.equal(env.smtp.authAttempts.length, 0);
    assert.equal(env.smtp.messages.length, 0);
});

test('token endpoint not listening -> EOAUTH2 / ECONNECTION, nothing sent to SMTP', T, async t => {
    const port = await closedPort();
    const { env, transport } = await setup(t, {
        config: { oauth2: { host: `http://127.0.0.1:${port}/test-tenant/oauth2/v2.0/token` } }
    });
    const started = Date.now();
    const err = await rejection(transport.sendMail(mail(1)));

    assertCode(err, ['EOAUTH2', 'ECONNECTION']);
    assert.ok(Date.now() - started < 10000, 'fails fast on a refused connection');
    assertNoSecrets(err, { 'client secret': secretForms(TEST_CLIENT_SECRET) });
    assert.equal(env.smtp.authAttempts.length, 0);
    assert.equal(env.smtp.messages.length, 0);
});

// A refusal is remembered for oauth2.failureCacheSeconds (so that a queue of sends behind a
// wrong secret fails fast, see security-token.test.mjs), and not a moment longer.
test('a failed token request is cached only for oauth2.failureCacheSeconds: a send within it gets the same error, the next send after it asks again and succeeds', T, async t => {
    const { env, transport } = await setup(t, { config: { oauth2: { failureCacheSeconds: 2 } } });
    let calls = 0;
    env.token.setHandler((req, form, res, next) => {
        calls += 1;
        if (calls === 1) {
            // a non-retryable refusal (a retryable one might legitimately be retried inside sendMail)
            const body = JSON.stringify(entraErrorBody('invalid_client', 7000222, 'The provided client secret keys are expired.'));
            res.writeHead(401, { 'Content-Type': 'application/json' });
            return res.end(body);
        }
        return next();
    });
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EOAUTH2');
    const remembered = await rejection(transport.sendMail(mail(2)));
    assert.equal(remembered.message, err.message);
    assert.equal(env.token.requests.length, 1, 'the refusal was remembered');
    await sleep(2100);
    await transport.sendMail(mail(3));
    assert.equal(env.token.requests.length, 2);
    assert.equal(env.smtp.messages.length, 1);
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, env.token.issued[0]);
});
