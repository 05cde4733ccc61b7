// Token endpoint failures: which are retried (5xx, network errors, temporarily_unavailable,
// timeouts: 3 attempts with backoff) and which are not (4xx credential errors: 1 request),
// malformed answers, every AADSTS code of the reference table, failures shared by queued
// callers, and 429 with Retry-After (no request at all until it has passed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadTransport, TEST_CLIENT_SECRET, TEST_USER } from './support/config.mjs';
import { setupTransport } from './support/env.mjs';
import { assertCode, assertNoSecrets, rejection, secretForms } from './support/errors.mjs';
import { entraErrorBody, sendJson } from './support/token-server.mjs';
import { sleep, sleepUntil, timed } from './support/wait.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };

const setup = (t, options) => setupTransport(t, createTransport, options);

const mail = n => ({ from: TEST_USER, to: 'rcpt@example.com', subject: `message ${n}`, text: `body ${n}` });
const noSecret = err => assertNoSecrets(err, { 'client secret': secretForms(TEST_CLIENT_SECRET) });

/** A handler answering the first `count` requests with `fail(res, req)`, then the default. */
function failFirst(count, fail) {
    let calls = 0;
    return async (req, form, res, next) => {
        calls += 1;
        if (calls <= count) {
            return fail(res, req);
        }
        return next();
    };
}

const gaps = requests => requests.slice(1).map((r, i) => r.at - requests[i].at);

// ---------------------------------------------------------------------------------------
// Transient failures: retried, 3 attempts in total

test('503 then success -> delivered, exactly 2 token requests (retried after a backoff)', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler(
        failFirst(1, res => {
            res.writeHead(503, { 'Content-Type': 'text/html' });
            res.end('<html><body>Service Unavailable</body></html>');
        })
    );
    await transport.sendMail(mail(1));
    assert.equal(env.smtp.messages.length, 1);
    assert.equal(env.token.requests.length, 2);
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, env.token.issued[0]);
    const [gap] = gaps(env.token.requests);
    assert.ok(gap >= 100, `the retry waited for a backoff (~250 ms jittered), got ${gap} ms`);
});

test('{"error":"temporarily_unavailable"} then success -> delivered, exactly 2 token requests', T, async t => {
    const { env, transport } = await setup(t);
    // A 400: it is the `error` field that makes it retryable, not the status.
    env.token.setHandler(
        failFirst(1, res =>
            sendJson(res, 400, entraErrorBody('temporarily_unavailable', 90033, 'A transient error has occurred. Please try again.'))
        )
    );
    await transport.sendMail(mail(1));
    assert.equal(env.smtp.messages.length, 1);
    assert.equal(env.token.requests.length, 2);
});

test('connection dropped by the endpoint, then success -> delivered, exactly 2 token requests', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler(failFirst(1, (res, req) => req.socket.destroy()));
    await transport.sendMail(mail(1));
    assert.equal(env.smtp.messages.length, 1);
    assert.equal(env.token.requests.length, 2);
});

test('three 500s -> EOAUTH2 after exactly 3 requests, with ~250 ms then ~500 ms backoff', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler((req, form, res) => {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('Internal Server Error');
    });
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EOAUTH2');
    assert.equal(err.statusCode, 500);
    assert.match(err.message, /500/);
    assert.equal(err.permanent, false, 'a 5xx is transient');
    noSecret(err);
    assert.equal(env.token.requests.length, 3);
    const [first, second] = gaps(env.token.requests);
    // Jitter is between half and all of the backoff: >= 125 ms, then >= 250 ms.
    assert.ok(first >= 100, `first backoff ${first} ms`);
    assert.ok(second >= 200, `second backoff ${second} ms`);
    assert.ok(first < 5000 && second < 5000, `backoffs are short (${first}, ${second} ms)`);
    // nothing more afterwards
    await sleep(1000);
    assert.equal(env.token.requests.length, 3);
    assert.equal(env.smtp.authAttempts.length, 0);
});

test('token endpoint hangs past oauth2.timeout (500 ms) -> EOAUTH2 "timed out", 3 attempts', T, async t => {
    const { env, transport } = await setup(t, { config: { oauth2: { timeout: 500 } } });
    env.token.setHandler(() => new Promise(() => {})); // never answers
    const send = await timed(() => transport.sendMail(mail(1)));
    const err = send.error;
    assertCode(err, 'EOAUTH2');
    assert.match(err.message, /timed out/i);
    noSecret(err);
    assert.equal(env.token.requests.length, 3, 'a timeout is transient: 3 attempts');
    assert.ok(send.ms >= 3 * 500, `each attempt waited for the timeout (${send.ms} ms in total)`);
    assert.ok(send.ms < 10000, `and no longer than that, plus the backoffs (${send.ms} ms)`);
    assert.equal(env.smtp.authAttempts.length, 0);
});

// ---------------------------------------------------------------------------------------
// Malformed answers

test('200 with a body that is not JSON -> EOAUTH2, not retried', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler((req, form, res) => {
        res.writeHead(200, { 'Content-Type': 'text/html' });
        res.end('<html><body>Sign in to your account</body></html>');
    });
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EOAUTH2');
    noSecret(err);
    assert.equal(env.token.requests.length, 1);
    assert.equal(env.smtp.authAttempts.length, 0);
});

test('200 JSON without access_token -> EOAUTH2 naming access_token, not retried', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler((req, form, res) => sendJson(res, 200, { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599 }));
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EOAUTH2');
    assert.match(err.message, /access_token/);
    noSecret(err);
    assert.equal(env.token.requests.length, 1);
    assert.equal(env.smtp.authAttempts.length, 0);
});

test('an error_description that echoes the client secret is scrubbed from the error', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler((req, form, res) =>
        sendJson(res, 400, {
            error: 'invalid_request',
            error_description: `AADSTS900144: bad request client_secret=${form.client_secret} scope=${form.scope}`,
            error_codes: [900144]
        })
    );
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EOAUTH2');
    noSecret(err);
    assert.equal(env.token.requests.length, 1);
});

// ---------------------------------------------------------------------------------------
// Every AADSTS code of the reference table: EOAUTH2 with the fields, a hint, 1 request

const AADSTS = [
    { code: 7000215, error: 'invalid_client', status: 401, text: 'Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.', hint: /Value/ },
    { code: 7000222, error: 'invalid_client', status: 401, text: 'The provided client secret keys for app are expired. Visit the Azure portal to create new keys for your app.', hint: /expired|new secret/i },
    { code: 7000218, error: 'invalid_request', status: 400, text: "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.", hint: /secret/i },
    { code: 700016, error: 'unauthorized_client', status: 400, text: "Application with identifier 'x' was not found in the directory 'test-tenant'.", hint: /client.?id|tenant/i },
    { code: 90002, error: 'invalid_request', status: 400, text: "Tenant 'test-tenant' not found.", hint: /tenant/i },
    { code: 70011, error: 'invalid_scope', status: 400, text: "The provided value for the input parameter 'scope' is not valid.", hint: /scope/i },
    { code: 500011, error: 'invalid_resource', status: 400, text: 'The resource principal named https://outlook.office365.com was not found in the tenant named test-tenant.', hint: /scope|resource|tenant/i },
    { code: 700027, error: 'invalid_client', status: 401, text: 'Client assertion failed signature validation.', hint: /certificate|thumbprint/i },
    { code: 700024, error: 'invalid_client', status: 401, text: 'Client assertion is not within its valid time range.', hint: /clock/i },
    { code: 7000112, error: 'unauthorized_client', status: 400, text: 'Application is disabled.', hint: /disabled|enable/i },
    { code: 53003, error: 'access_denied', status: 400, text: 'Access has been blocked by Conditional Access policies.', hint: /Conditional Access/i },
    // The reference table has no `error` value for 50196; a 400 invalid_request is what is seen.
    { code: 50196, error: 'invalid_request', status: 400, text: 'The server terminated an operation because it encountered a client request loop.', hint: /cach/i }
];

for (const row of AADSTS) {
    test(`AADSTS${row.code} (${row.status} ${row.error}) -> EOAUTH2 with oauthError, oauthErrorCodes and a hint; 1 request`, T, async t => {
        const { env, transport } = await setup(t);
        env.token.setHandler((req, form, res) => sendJson(res, row.status, entraErrorBody(row.error, row.code, row.text)));
        const err = await rejection(transport.sendMail(mail(1)));

        assertCode(err, 'EOAUTH2');
        assert.equal(err.oauthError, row.error);
        assert.deepEqual(err.oauthErrorCodes, [row.code]);
        assert.equal(err.statusCode, row.status);
        assert.equal(typeof err.response, 'string');
        assert.match(err.response, new RegExp(`AADSTS${row.code}`));
        assert.equal(typeof err.hint, 'string');
        assert.ok(err.hint.trim().length > 0, 'the hint is not empty');
        assert.match(err.hint, row.hint);
        assert.equal(err.permanent, true, 'a credential / setup error is permanent');
        noSecret(err);
        assert.equal(env.token.requests.length, 1, 'never retried');
        assert.equal(env.smtp.authAttempts.length, 0);
    });
}

// ---------------------------------------------------------------------------------------
// Failures shared by the callers queued on a request

test('10 concurrent sends, endpoint answers 401 invalid_client -> 1 request, all 10 get the EOAUTH2', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler(async (req, form, res) => {
        await sleep(300);
        sendJson(res, 401, entraErrorBody('invalid_client', 7000215, 'Invalid client secret provided.'));
    });
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => transport.sendMail(mail(i))));
    for (const result of results) {
        assert.equal(result.status, 'rejected');
        assertCode(result.reason, 'EOAUTH2');
        assert.equal(result.reason.oauthError, 'invalid_client');
    }
    assert.equal(env.token.requests.length, 1, 'the queued callers share the failed request');
});

test('5 concurrent sends, endpoint fails with 500 every time -> 3 requests in total (not 3 per send)', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler(async (req, form, res) => {
        await sleep(200);
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('Internal Server Error');
    });
    const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => transport.sendMail(mail(i))));
    for (const result of results) {
        assert.equal(result.status, 'rejected');
        assertCode(result.reason, 'EOAUTH2');
    }
    assert.equal(env.token.requests.length, 3);
});

// ---------------------------------------------------------------------------------------
// 429 Too Many Requests

/** Answers 429 with `retryAfter` (a header value, or undefined for none) while `state.throttle`. */
function throttling(state, retryAfter) {
    return (req, form, res, next) => {
        if (!state.throttle) {
            return next();
        }
        const headers = retryAfter === undefined ? {} : { 'Retry-After': retryAfter };
        return sendJson(
            res,
            429,
            entraErrorBody('temporarily_unavailable', 50196, 'The server terminated an operation because it encountered a client request loop.'),
            headers
        );
    };
}

test('429 with Retry-After: 2 -> EOAUTH2 (statusCode 429, retryAfter 2, says when); sends within 2 s fail fast without a request; after 2 s a send succeeds', T, async t => {
    const { env, transport } = await setup(t);
    const state = { throttle: true };
    env.token.setHandler(throttling(state, '2'));

    const err = await rejection(transport.sendMail(mail(1)));
    const answeredAt = Date.now();
    assertCode(err, 'EOAUTH2');
    assert.equal(err.statusCode, 429);
    assert.equal(err.retryAfter, 2);
    assert.match(err.message, /retry|try again/i);
    assert.match(err.message, /\b\d+ ?s\b|GMT/, `the message says when: ${err.message}`);
    assert.equal(err.permanent, false);
    noSecret(err);
    assert.equal(env.token.requests.length, 1, '429 is not retried');
    const throttledAt = env.token.requests[0].at;

    // From here on the endpoint would answer; the transport must not ask it before 2 s.
    state.throttle = false;
    const second = await timed(() => transport.sendMail(mail(2)));
    assert.ok(Date.now() < throttledAt + 2000, 'the second send ran within the Retry-After window (test precondition)');
    assertCode(second.error, 'EOAUTH2');
    assert.equal(second.error.statusCode, 429);
    assert.ok(second.error.retryAfter >= 1 && second.error.retryAfter <= 2, `retryAfter ${second.error.retryAfter}`);
    assert.match(second.error.message, /retry|try again/i);
    assert.equal(env.token.requests.length, 1, 'no request during the Retry-After window');
    assert.ok(second.ms < 2000, `it failed fast (${second.ms} ms)`);

    const third = await timed(() => transport.getAccessToken());
    assertCode(third.error, 'EOAUTH2');
    assert.equal(third.error.statusCode, 429);
    assert.equal(env.token.requests.length, 1, 'getAccessToken() does not ask either');
    assert.equal(env.smtp.authAttempts.length, 0);

    await sleepUntil(Math.max(throttledAt, answeredAt) + 2000 + 300);
    await transport.sendMail(mail(3));
    assert.equal(env.token.requests.length, 2);
    assert.equal(env.smtp.messages.length, 1);
});

test('429 with an HTTP-date Retry-After -> retryAfter from the date; fails fast until then, then succeeds', T, async t => {
    const { env, transport } = await setup(t);
    const state = { throttle: true };
    let until;
    env.token.setHandler((req, form, res, next) => {
        until = Math.ceil((Date.now() + 3000) / 1000) * 1000; // a whole second, as an HTTP date has
        return throttling(state, new Date(until).toUTCString())(req, form, res, next);
    });
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EOAUTH2');
    assert.equal(err.statusCode, 429);
    assert.ok(err.retryAfter >= 2 && err.retryAfter <= 4, `retryAfter ${err.retryAfter} s for a date ~3 s ahead`);
    assert.equal(env.token.requests.length, 1);

    state.throttle = false;
    const second = await rejection(transport.sendMail(mail(2)));
    assertCode(second, 'EOAUTH2');
    assert.equal(second.statusCode, 429);
    assert.equal(env.token.requests.length, 1, 'no request before the date');

    await sleepUntil(until + 300);
    await transport.sendMail(mail(3));
    assert.equal(env.token.requests.length, 2);
});

test('429 without Retry-After -> retryAfter 60 (the default)', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler(throttling({ throttle: true }, undefined));
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EOAUTH2');
    assert.equal(err.statusCode, 429);
    assert.ok(err.retryAfter >= 59 && err.retryAfter <= 60, `retryAfter ${err.retryAfter}`);
    assert.equal(env.token.requests.length, 1);
});

test('429 with Retry-After: 99999 -> retryAfter capped at 3600', T, async t => {
    const { env, transport } = await setup(t);
    env.token.setHandler(throttling({ throttle: true }, '99999'));
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EOAUTH2');
    assert.equal(err.statusCode, 429);
    assert.ok(err.retryAfter >= 3599 && err.retryAfter <= 3600, `retryAfter ${err.retryAfter}`);
    assert.equal(env.token.requests.length, 1);
});
