// Looking at the token: getAccessToken() (the cached token, no extra request), inspectToken()
// (claims and the setup problems they show), the hint of a final 535 built from those claims,
// and the 'token' event (one per new token, never carrying the token).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadTransport, TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_USER, withoutPath } from './support/config.mjs';
import { setupTransport, startEnv } from './support/env.mjs';
import { assertCode, assertNoSecrets, exposedText, rejection, secretForms } from './support/errors.mjs';
import { sleep, sleepUntil } from './support/wait.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };

const setup = (t, options) => setupTransport(t, createTransport, options);

const mail = n => ({ from: TEST_USER, to: 'rcpt@example.com', subject: `message ${n}`, text: `body ${n}` });
const codes = report => report.problems.map(p => p.code);
// Only a tenant id (a GUID) in the token URL or `tenantId` can be compared with `tid`.
const TENANT_GUID = '0c3e7d2a-5b1f-4e8a-9d6c-2f4b8a1e7c30';
const OTHER_TENANT_GUID = '9b1f0c2e-0000-4000-8000-000000000001';

// ---------------------------------------------------------------------------------------
// getAccessToken()

test('getAccessToken() after a send -> the cached token and its expiry as a Date, no extra request', T, async t => {
    const { env, transport } = await setup(t);
    await transport.sendMail(mail(1));
    const { accessToken, expiresAt } = await transport.getAccessToken();
    assert.equal(accessToken, env.token.issued[0]);
    assert.ok(expiresAt instanceof Date, 'expiresAt is a Date');
    assert.ok(
        Math.abs(expiresAt.getTime() - env.token.grants[0].expiresAt) < 2000,
        `expiresAt ${expiresAt.toISOString()} ~ ${new Date(env.token.grants[0].expiresAt).toISOString()}`
    );
    await transport.getAccessToken();
    assert.equal(env.token.requests.length, 1, 'no request for a cached token');
});

test('getAccessToken() before any send fetches once; sends then reuse that token', T, async t => {
    const { env, transport } = await setup(t);
    const [a, b] = await Promise.all([transport.getAccessToken(), transport.getAccessToken()]);
    assert.equal(a.accessToken, env.token.issued[0]);
    assert.equal(b.accessToken, env.token.issued[0]);
    assert.equal(env.token.requests.length, 1);
    await transport.sendMail(mail(1));
    assert.equal(env.token.requests.length, 1);
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, a.accessToken);
    assert.equal(env.smtp.connections.length, 1, 'getAccessToken() itself opens no SMTP connection');
});

test('getAccessToken() rejects with EOAUTH2 when the endpoint refuses', T, async t => {
    const { env, transport } = await setup(t, { config: { oauth2: { clientSecret: 'wrong~secret.value' } } });
    const err = await rejection(transport.getAccessToken());
    assertCode(err, 'EOAUTH2');
    assert.equal(err.oauthError, 'invalid_client');
    assert.equal(env.token.requests.length, 1);
});

// ---------------------------------------------------------------------------------------
// inspectToken()

test('inspectToken() on a good Exchange token -> isJwt, its claims, no problems', T, async t => {
    const { env, transport } = await setup(t);
    await transport.sendMail(mail(1));
    const report = await transport.inspectToken();
    assert.equal(report.isJwt, true);
    assert.equal(report.aud, 'https://outlook.office365.com');
    assert.deepEqual(report.roles, ['SMTP.SendAsApp']);
    assert.equal(report.tid, 'test-tenant');
    assert.equal(report.appid, TEST_CLIENT_ID);
    assert.ok(report.exp instanceof Date, 'exp is a Date');
    assert.ok(Math.abs(report.exp.getTime() - env.token.grants[0].expiresAt) < 2000);
    assert.deepEqual(report.problems, []);
    assert.equal(env.token.requests.length, 1, 'inspecting the cached token makes no request');
    assertNoSecrets(report, { 'access token': env.token.issued[0] });
});

test("inspectToken(): Exchange's app id as aud (00000002-0000-0ff1-ce00-000000000000) is not a problem", T, async t => {
    const { transport } = await setup(t, { token: { claims: { aud: '00000002-0000-0ff1-ce00-000000000000' } } });
    const report = await transport.inspectToken();
    assert.deepEqual(report.problems, []);
});

test('inspectToken(): a Microsoft Graph token -> AUDIENCE problem naming Graph', T, async t => {
    const { transport } = await setup(t, { token: { claims: { aud: 'https://graph.microsoft.com' } } });
    const report = await transport.inspectToken();
    assert.equal(report.aud, 'https://graph.microsoft.com');
    assert.deepEqual(codes(report), ['AUDIENCE']);
    assert.match(report.problems[0].message, /graph/i);
    assert.match(report.problems[0].message, /outlook\.office365\.com/);
});

test('inspectToken(): roles without SMTP.SendAsApp -> ROLE_MISSING', T, async t => {
    const { transport } = await setup(t, { token: { claims: { roles: ['Mail.Send', 'full_access_as_app'] } } });
    const report = await transport.inspectToken();
    assert.deepEqual(report.roles, ['Mail.Send', 'full_access_as_app']);
    assert.deepEqual(codes(report), ['ROLE_MISSING']);
    assert.match(report.problems[0].message, /SMTP\.SendAsApp/);
});

test('inspectToken(): no roles claim at all -> ROLE_MISSING', T, async t => {
    const { transport } = await setup(t, { token: { claims: { roles: undefined } } });
    const report = await transport.inspectToken();
    assert.deepEqual(report.roles, []);
    assert.deepEqual(codes(report), ['ROLE_MISSING']);
});

test('inspectToken(): tid of another tenant than the token URL names -> TENANT_MISMATCH', T, async t => {
    const { transport } = await setup(t, { token: { tenant: TENANT_GUID, claims: { tid: OTHER_TENANT_GUID } } });
    const report = await transport.inspectToken();
    assert.equal(report.tid, OTHER_TENANT_GUID);
    assert.deepEqual(codes(report), ['TENANT_MISMATCH']);
    assert.match(report.problems[0].message, new RegExp(TENANT_GUID));
});

test('inspectToken(): tid of another tenant than the configured tenantId -> TENANT_MISMATCH', T, async t => {
    const env = await startEnv({ token: { tenant: TENANT_GUID, claims: { tid: OTHER_TENANT_GUID } } });
    t.after(() => env.close());
    const config = withoutPath(env.config({ oauth2: { tenantId: TENANT_GUID, cloud: env.token.origin } }), 'oauth2.host');
    const transport = env.track(createTransport(config));
    const report = await transport.inspectToken();
    assert.deepEqual(codes(report), ['TENANT_MISMATCH']);
});

for (const tenant of ['contoso.onmicrosoft.com', 'organizations', 'test-tenant']) {
    test(`inspectToken(): a token URL with the tenant '${tenant}' (not a tenant id) says nothing about tid -> no TENANT_MISMATCH; 535 hint without it`, T, async t => {
        const { transport } = await setup(t, { token: { tenant, claims: { tid: OTHER_TENANT_GUID } } });
        const report = await transport.inspectToken();
        assert.equal(report.tid, OTHER_TENANT_GUID);
        assert.deepEqual(codes(report), []);

        const env = await startEnv({ token: { tenant, claims: { tid: OTHER_TENANT_GUID } }, smtp: { acceptAuth: () => false } });
        t.after(() => env.close());
        const refused = env.track(createTransport(env.config()));
        const err = await rejection(refused.sendMail(mail(1)));
        assertCode(err, 'EAUTH');
        assert.doesNotMatch(err.hint, /tenant/i);
    });
}

for (const exp of [1e300, -1, -1e300, 1e20, 'NaN', '1e999']) {
    test(`inspectToken() and the 535 hint on a token whose exp is absurd (${JSON.stringify(exp)}) -> no exp, no panic; the send works`, T, async t => {
        const { env, transport } = await setup(t, { token: { claims: { exp } } });
        await transport.sendMail(mail(1));
        const report = await transport.inspectToken();
        assert.equal(report.isJwt, true);
        assert.equal(report.exp, null);
        assert.deepEqual(codes(report), []);
        assert.equal(env.smtp.messages.length, 1);

        const refusing = await startEnv({ token: { claims: { exp, roles: [] } }, smtp: { acceptAuth: () => false } });
        t.after(() => refusing.close());
        const refused = refusing.track(createTransport(refusing.config()));
        const err = await rejection(refused.sendMail(mail(2)));
        assertCode(err, 'EAUTH');
        assert.match(err.hint, /SMTP\.SendAsApp/);
    });
}

test('inspectToken(): appid of another app -> APP_MISMATCH', T, async t => {
    const other = '11111111-2222-4333-8444-555555555555';
    const { transport } = await setup(t, { token: { claims: { appid: other, azp: other } } });
    const report = await transport.inspectToken();
    assert.equal(report.appid, other);
    assert.deepEqual(codes(report), ['APP_MISMATCH']);
});

test('inspectToken(): a Graph token without the role from another tenant -> AUDIENCE, ROLE_MISSING, TENANT_MISMATCH', T, async t => {
    const { transport } = await setup(t, {
        token: { tenant: TENANT_GUID, claims: { aud: 'https://graph.microsoft.com', roles: ['Mail.Send'], tid: OTHER_TENANT_GUID } }
    });
    const report = await transport.inspectToken();
    assert.deepEqual(codes(report).sort(), ['AUDIENCE', 'ROLE_MISSING', 'TENANT_MISMATCH']);
    for (const problem of report.problems) {
        assert.equal(typeof problem.message, 'string');
        assert.ok(problem.message.length > 0);
    }
});

test('inspectToken() on an opaque (non-JWT) token -> isJwt false, no problems, no error', T, async t => {
    const { env, transport } = await setup(t);
    const opaque = 'EwBwA8l6BAAU-opaque-token-value-not-a-jwt';
    env.token.setHandler((req, form, res) => env.token.respondWithToken(res, { accessToken: opaque }));
    const { accessToken } = await transport.getAccessToken();
    assert.equal(accessToken, opaque);
    const report = await transport.inspectToken();
    assert.equal(report.isJwt, false);
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.roles, []);
    assert.equal(report.aud ?? null, null);
    assert.equal(report.tid ?? null, null);
    assert.equal(report.appid ?? null, null);
    assert.equal(report.exp, null);
    assert.equal(env.token.requests.length, 1);
});

// ---------------------------------------------------------------------------------------
// The hint of a final 535, from the token's claims

test('535 5.7.3 twice with a Graph-audience token -> EAUTH whose hint starts with "The token shows:" and names the audience', T, async t => {
    const { env, transport } = await setup(t, {
        token: { claims: { aud: 'https://graph.microsoft.com' } },
        smtp: { acceptAuth: () => false }
    });
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EAUTH');
    assert.equal(err.responseCode, 535);
    assert.match(err.response, /5\.7\.3/);
    assert.equal(typeof err.hint, 'string');
    assert.ok(err.hint.startsWith('The token shows:'), `hint: ${err.hint}`);
    assert.match(err.hint, /audience/i);
    assert.match(err.hint, /graph\.microsoft\.com/);
    assert.equal(env.token.requests.length, 2);
    assertNoSecrets(err, {
        'client secret': secretForms(TEST_CLIENT_SECRET),
        'access tokens': env.token.issued.flatMap(token => secretForms(token, { user: TEST_USER }))
    });
});

test('535 twice with a token missing SMTP.SendAsApp -> the hint names the missing role', T, async t => {
    const { transport } = await setup(t, {
        token: { claims: { roles: [] } },
        smtp: { acceptAuth: () => false }
    });
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EAUTH');
    assert.ok(err.hint.startsWith('The token shows:'), `hint: ${err.hint}`);
    assert.match(err.hint, /SMTP\.SendAsApp/);
});

test('535 twice with a token that shows no problem -> the usual hint, not "The token shows:"', T, async t => {
    const { transport } = await setup(t, { smtp: { acceptAuth: () => false } });
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EAUTH');
    assert.equal(typeof err.hint, 'string');
    assert.ok(err.hint.length > 0);
    assert.ok(!err.hint.startsWith('The token shows:'), `hint: ${err.hint}`);
});

// ---------------------------------------------------------------------------------------
// 'token' events

test("'token' event: one per new token, with user and expiresAt (a Date), never the token", T, async t => {
    const { env, transport } = await setup(t, { token: { expiresIn: 5 } });
    const events = [];
    transport.on('token', event => events.push({ event, at: Date.now() }));

    await transport.sendMail(mail(1));
    await transport.sendMail(mail(2));
    await transport.sendMail(mail(3));
    await transport.getAccessToken();
    await sleep(100); // events come through the event loop
    assert.equal(events.length, 1, 'one token, one event (cached uses do not emit)');

    // Past use_until (4.375 s) a send gets a new token: a second event.
    await sleepUntil(env.token.grants[0].issuedAt + 4600);
    await transport.sendMail(mail(4));
    await sleep(100);
    assert.equal(env.token.issued.length, 2);
    assert.equal(events.length, env.token.issued.length, 'one event per token obtained');

    for (const [i, { event }] of events.entries()) {
        assert.deepEqual(Object.keys(event).sort(), ['expiresAt', 'user']);
        assert.equal(event.user, TEST_USER);
        assert.ok(event.expiresAt instanceof Date, 'expiresAt is a Date');
        assert.ok(
            Math.abs(event.expiresAt.getTime() - env.token.grants[i].expiresAt) < 2000,
            `event ${i} expiresAt matches token ${i}`
        );
        const text = exposedText(event);
        for (const token of env.token.issued) {
            assert.ok(!text.includes(token), 'the event does not carry the token');
        }
    }
});

test("'token' event: a failed token request emits nothing; the background renewal emits one", T, async t => {
    // The refusal is lifted right after the first send: no failure cache, or the second send
    // would get the remembered refusal.
    const { env, transport } = await setup(t, { token: { expiresIn: 3600, refreshIn: 1 }, config: { oauth2: { failureCacheSeconds: 0 } } });
    const events = [];
    transport.on('token', event => events.push(event));
    let refuse = true;
    env.token.setHandler((req, form, res, next) => {
        if (refuse) {
            res.writeHead(401, { 'Content-Type': 'application/json' });
            return res.end(JSON.stringify({ error: 'invalid_client', error_description: 'AADSTS7000222: expired', error_codes: [7000222] }));
        }
        return next();
    });
    await rejection(transport.sendMail(mail(1)));
    await sleep(100);
    assert.equal(events.length, 0, 'no event for a refused request');

    refuse = false;
    await transport.sendMail(mail(2));
    await sleep(100);
    assert.equal(events.length, 1);

    // refresh_in 1 s: a send after it renews in the background.
    await sleepUntil(env.token.grants[0].issuedAt + 1300);
    await transport.sendMail(mail(3));
    const deadline = Date.now() + 5000;
    while (events.length < 2 && Date.now() < deadline) {
        await sleep(20);
    }
    assert.equal(env.token.issued.length, 2);
    assert.equal(events.length, 2, 'the background renewal emitted its event');
    assert.equal(env.token.requests.length, 3);
});
