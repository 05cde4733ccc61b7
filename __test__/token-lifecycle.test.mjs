// Token lifecycle: single-flight under concurrency (up to 500 sends), background renewal
// between renew_at and use_until, waiting for a new token after use_until, refresh_in and
// renewBeforeSeconds, and the one refresh-and-retry when SMTP AUTH refuses a token (535).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadTransport, TEST_USER } from './support/config.mjs';
import { setupTransport } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';
import { sleep, sleepUntil, timed, waitFor } from './support/wait.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 30000 };

const setup = (t, options) => setupTransport(t, createTransport, options);

const mail = n => ({ from: TEST_USER, to: 'rcpt@example.com', subject: `message ${n}`, text: `body ${n}` });

/** The access token each AUTH attempt presented, in order. */
const authTokens = env => env.smtp.authAttempts.map(a => a.accessToken);

test('25 concurrent sends with no token yet -> exactly 1 token request, all use that token', T, async t => {
    const { env, transport } = await setup(t, { token: { delayMs: 300 } });
    const infos = await Promise.all(Array.from({ length: 25 }, (_, i) => transport.sendMail(mail(i))));
    assert.equal(infos.length, 25);
    assert.equal(env.smtp.messages.length, 25);
    assert.equal(env.token.requests.length, 1);
    assert.equal(env.token.issued.length, 1);
    assert.equal(env.smtp.authAttempts.length, 25);
    assert.ok(authTokens(env).every(token => token === env.token.issued[0]), 'every AUTH used the one token');
});

test('500 concurrent sendMail -> exactly 1 token request and all 500 delivered', { timeout: 90000 }, async t => {
    const { env, transport } = await setup(t, {
        token: { delayMs: 200 },
        // one connection per message: 500 at once (smtp-server has no client limit by default)
        smtp: { maxClients: 1000 }
    });
    const N = 500;
    const started = Date.now();
    const results = await Promise.allSettled(Array.from({ length: N }, (_, i) => transport.sendMail(mail(i))));
    const elapsed = Date.now() - started;
    const failed = results.filter(r => r.status === 'rejected');
    assert.equal(
        failed.length,
        0,
        `${failed.length} of ${N} sends failed, e.g. ${failed[0] && failed[0].reason && `${failed[0].reason.code} ${failed[0].reason.message}`}`
    );
    assert.equal(env.token.requests.length, 1, 'one token request for 500 concurrent sends');
    assert.equal(env.token.issued.length, 1);
    assert.equal(env.smtp.messages.length, N);
    const subjects = new Set(env.smtp.messages.map(m => m.parsed.subject));
    assert.equal(subjects.size, N, 'every message arrived once');
    assert.ok(authTokens(env).every(token => token === env.token.issued[0]));
    t.diagnostic(`500 concurrent sends took ${elapsed} ms`);
});

test('background renewal (5 s token): sends between renew_at and use_until use the old token without waiting; one request fetches the next', T, async t => {
    // expires_in 5, renewBeforeSeconds 300 -> margin clamped to 2.5 s:
    // renew_at = 2.5 s, use_until = 5 - 2.5/4 = 4.375 s.
    const { env, transport } = await setup(t, { token: { expiresIn: 5 } });
    await transport.sendMail(mail(1));
    assert.equal(env.token.requests.length, 1);
    const tokenA = env.token.issued[0];
    const t0 = env.token.grants[0].issuedAt;

    // Before renew_at: nothing is requested.
    await sleepUntil(t0 + 1500);
    await transport.sendMail(mail(2));
    assert.equal(env.token.requests.length, 1, 'no renewal before renew_at (2.5 s)');

    // From now on the endpoint is slow.
    const DELAY = 1500;
    env.token.setHandler(async (req, form, res, next) => {
        await sleep(DELAY);
        return next();
    });

    await sleepUntil(t0 + 2700);
    const sends = [];
    let n = 3;
    // Sends while the renewal is in flight (started by the first of them at ~2.8 s, answered
    // at ~4.3 s); the last one starts by 3.5 s so that it takes its token before use_until.
    do {
        const attemptsBefore = env.smtp.authAttempts.length;
        const result = await timed(() => transport.sendMail(mail(n++)));
        sends.push({
            ...result,
            tokens: env.smtp.authAttempts.slice(attemptsBefore).map(a => a.accessToken),
            issuedAtEnd: env.token.issued.length,
            requestsAtEnd: env.token.requests.length
        });
    } while (Date.now() < t0 + 3500 && sends.length < 6);

    t.diagnostic(`${sends.length} sends during the renewal took ${sends.map(s => s.ms).join(', ')} ms (token request: ${DELAY} ms)`);
    for (const [i, send] of sends.entries()) {
        assert.equal(send.error, null, `send ${i} during the renewal failed: ${send.error && send.error.message}`);
        assert.ok(send.ms < DELAY, `send ${i} during the renewal took ${send.ms} ms; it must not wait for the ${DELAY} ms token request`);
        assert.deepEqual(send.tokens, [tokenA], `send ${i} during the renewal used the old token`);
        assert.equal(send.requestsAtEnd, 2, `the renewal request was made by the time send ${i} ended`);
        assert.equal(send.issuedAtEnd, 1, `send ${i} completed while the renewal was still in flight`);
    }

    await waitFor(() => env.token.issued.length === 2, { timeoutMs: 5000, label: 'the background renewal to finish' });
    assert.equal(env.token.requests.length, 2, 'exactly one request for the renewal, whatever the number of sends');

    env.token.setHandler(null);
    const attemptsBefore = env.smtp.authAttempts.length;
    await transport.sendMail(mail(n++));
    await transport.sendMail(mail(n++));
    assert.deepEqual(
        env.smtp.authAttempts.slice(attemptsBefore).map(a => a.accessToken),
        [env.token.issued[1], env.token.issued[1]],
        'later sends use the renewed token'
    );
    assert.equal(env.token.requests.length, 2, 'and they cause no further request');
    assert.equal(env.smtp.messages.length, n - 1);
});

test('after use_until (5 s token, send at 4.6 s) a send waits for a new token and never uses the old one', T, async t => {
    const { env, transport } = await setup(t, { token: { expiresIn: 5 } });
    await transport.sendMail(mail(1));
    const tokenA = env.token.issued[0];
    const t0 = env.token.grants[0].issuedAt;

    const DELAY = 600;
    env.token.setHandler(async (req, form, res, next) => {
        await sleep(DELAY);
        return next();
    });
    // No send between renew_at and use_until: there is no background renewal to profit from.
    await sleepUntil(t0 + 4600);
    const attemptsBefore = env.smtp.authAttempts.length;
    const send = await timed(() => transport.sendMail(mail(2)));
    assert.equal(send.error, null, send.error && send.error.message);
    assert.equal(env.token.requests.length, 2);
    const used = env.smtp.authAttempts.slice(attemptsBefore).map(a => a.accessToken);
    assert.deepEqual(used, [env.token.issued[1]], 'the send used the new token');
    assert.ok(!used.includes(tokenA), 'the token past use_until (4.375 s) was not used, although it had not expired');
    assert.ok(send.ms >= DELAY - 50, `the send waited for the token request (${send.ms} ms, request takes ${DELAY} ms)`);
});

test('refresh_in is honoured: expires_in 3600 + refresh_in 2 -> renewed in the background after 2 s', T, async t => {
    const { env, transport } = await setup(t, { token: { expiresIn: 3600, refreshIn: 2 } });
    await transport.sendMail(mail(1));
    const tokenA = env.token.issued[0];
    const t0 = env.token.grants[0].issuedAt;

    await sleepUntil(t0 + 1000);
    await transport.sendMail(mail(2));
    assert.equal(env.token.requests.length, 1, 'not renewed before refresh_in');

    await sleepUntil(t0 + 2300);
    const attemptsBefore = env.smtp.authAttempts.length;
    await transport.sendMail(mail(3));
    assert.deepEqual(
        env.smtp.authAttempts.slice(attemptsBefore).map(a => a.accessToken),
        [tokenA],
        'the still-valid token is used while the next one is fetched'
    );
    await waitFor(() => env.token.issued.length === 2, { label: 'the refresh_in renewal' });
    assert.equal(env.token.requests.length, 2, 'refresh_in (2 s) triggered one renewal although expires_in is 3600');

    await transport.sendMail(mail(4));
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, env.token.issued[1]);
    assert.equal(env.token.requests.length, 2);
});

test('renewBeforeSeconds is honoured: expires_in 8 + renewBeforeSeconds 2 -> renewal at 6 s (not at 4 s as with the default)', T, async t => {
    // Default renewBeforeSeconds (300) clamps to 4 s here (half of 8): renew_at would be 4 s.
    // With 2: renew_at = 6 s, use_until = 8 - 0.5 = 7.5 s. The JWT's exp (whole seconds) would
    // cut the lifetime to 7-8 s, depending on the millisecond of issue: a far exp keeps the
    // arithmetic of this test exact.
    const { env, transport } = await setup(t, {
        token: { expiresIn: 8, claims: { exp: 4102444800 } },
        config: { oauth2: { renewBeforeSeconds: 2 } }
    });
    await transport.sendMail(mail(1));
    const tokenA = env.token.issued[0];
    const t0 = env.token.grants[0].issuedAt;

    await sleepUntil(t0 + 5000);
    await transport.sendMail(mail(2));
    assert.equal(env.token.requests.length, 1, 'at 5 s the token is not due yet (renew_at is 6 s)');
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, tokenA);

    await sleepUntil(t0 + 6300);
    await transport.sendMail(mail(3));
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, tokenA, 'between renew_at and use_until the old token is used');
    await waitFor(() => env.token.issued.length === 2, { label: 'the renewal after 6 s' });
    assert.equal(env.token.requests.length, 2);
    await transport.sendMail(mail(4));
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, env.token.issued[1]);
});

/**
 * SMTP servers whose acceptance of tokens is decided per test: `accept(attempt, env)`.
 */
async function setupWithAuthRule(t, accept, { smtp = {}, token, config } = {}) {
    const ref = {};
    const out = await setup(t, { token, config, smtp: { ...smtp, acceptAuth: attempt => accept(attempt, ref.env) } });
    ref.env = out.env;
    return out;
}

const isLiveToken = (attempt, env) => attempt.username === TEST_USER && env.token.liveTokens().includes(attempt.accessToken);

test('535 for the first token, then success with a fresh one -> delivered, exactly 2 token requests, AUTH retried on a new connection', T, async t => {
    const { env, transport } = await setupWithAuthRule(
        t,
        (attempt, env) => attempt.accessToken !== env.token.issued[0] && isLiveToken(attempt, env)
    );
    const info = await transport.sendMail(mail(1));
    assert.match(info.response, /^250/);
    assert.equal(env.smtp.messages.length, 1);
    assert.equal(env.token.requests.length, 2, 'the refused token was dropped and one new token requested');
    assert.deepEqual(authTokens(env), env.token.issued, 'first AUTH with token 1, second with token 2');
    assert.deepEqual(
        env.smtp.authAttempts.map(a => a.accepted),
        [false, true]
    );
    assert.equal(env.smtp.connections.length, 2, 'the retry used a new connection');

    // and the fresh token is now the cached one
    await transport.sendMail(mail(2));
    assert.equal(env.token.requests.length, 2);
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, env.token.issued[1]);
});

test('535 twice -> EAUTH with a hint, exactly 2 token requests, no third AUTH', T, async t => {
    const { env, transport } = await setupWithAuthRule(t, () => false);
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EAUTH');
    assert.equal(err.responseCode, 535);
    assert.equal(typeof err.hint, 'string');
    assert.ok(err.hint.length > 0);
    assert.equal(env.token.requests.length, 2);
    assert.equal(env.smtp.authAttempts.length, 2);
    assert.equal(env.smtp.connections.length, 2);
    assert.equal(env.smtp.messages.length, 0);
    // No loop in the background either.
    await sleep(500);
    assert.equal(env.token.requests.length, 2);
    assert.equal(env.smtp.authAttempts.length, 2);
});

test('334 challenge then 535, once -> refreshed token accepted: delivered, 2 token requests', T, async t => {
    const { env, transport } = await setupWithAuthRule(
        t,
        (attempt, env) => attempt.accessToken !== env.token.issued[0] && isLiveToken(attempt, env),
        { smtp: { challengeOnFail: true } }
    );
    await transport.sendMail(mail(1));
    assert.equal(env.smtp.messages.length, 1);
    assert.equal(env.token.requests.length, 2);
    assert.deepEqual(authTokens(env), env.token.issued);
});

test('334 challenge then 535, twice -> EAUTH, exactly 2 token requests', { timeout: 15000 }, async t => {
    const { env, transport } = await setupWithAuthRule(t, () => false, { smtp: { challengeOnFail: true } });
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EAUTH');
    assert.equal(err.responseCode, 535);
    assert.equal(env.token.requests.length, 2);
    assert.equal(env.smtp.authAttempts.length, 2);
});

test('verify() also refreshes once on 535', T, async t => {
    const { env, transport } = await setupWithAuthRule(
        t,
        (attempt, env) => attempt.accessToken !== env.token.issued[0] && isLiveToken(attempt, env)
    );
    assert.equal(await transport.verify(), true);
    assert.equal(env.token.requests.length, 2);
});
