// Where token requests go: `tenantId` + `cloud` (a named cloud or an authority URL) instead
// of `host`, the cloud's default Exchange scope, and `oauth2.proxy`. Named clouds are real
// https:// hosts: they are only ever reached through a local test proxy that either refuses
// the CONNECT or terminates the tunnel itself (with a certificate from the test CA) and hands
// the request to the local token server. Nothing connects anywhere but 127.0.0.1.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { makeServerPki, makeTestPki } from './support/certs.mjs';
import { loadTransport, TEST_CLIENT_SECRET, TEST_USER, TRANSPORT_PATH, withoutPath } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { assertCode, assertNoSecrets, rejection, secretForms } from './support/errors.mjs';
import { startProxy } from './support/proxy.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };

const mail = n => ({ from: TEST_USER, to: 'rcpt@example.com', subject: `message ${n}`, text: `body ${n}` });

const CLOUDS = [
    { cloud: 'global', host: 'login.microsoftonline.com', scope: 'https://outlook.office365.com/.default' },
    { cloud: 'usgov', host: 'login.microsoftonline.us', scope: 'https://outlook.office365.us/.default' },
    { cloud: 'china', host: 'login.partner.microsoftonline.cn', scope: 'https://partner.outlook.cn/.default' }
];

async function startProxyFor(t, opts) {
    const proxy = await startProxy(opts);
    t.after(() => proxy.close());
    return proxy;
}

/**
 * env.config() with `tenantId` (+ the given oauth2 fields) instead of `host`. The intercepting
 * test proxy's certificates come from the test CA, which the token client trusts through
 * `oauth2.ca` (`tls.ca` is for SMTP only).
 */
function tenantConfig(env, oauth2, { dropScope = false } = {}) {
    let config = withoutPath(env.config({ oauth2: { ca: makeTestPki().caPem, ...oauth2 } }), 'oauth2.host');
    if (dropScope) {
        config = withoutPath(config, 'oauth2.scope');
    }
    return config;
}

// Safety first: the named-cloud tests below use real Microsoft host names and rely on
// `oauth2.proxy` to keep every byte on 127.0.0.1. Prove the proxy is honoured with a host
// that cannot exist (`.invalid`); if it is not, those tests are skipped rather than risk a
// connection to a real login host (and the test right below fails).
async function proxyIsHonoured() {
    const proxy = await startProxy({ connect: 'refuse' });
    try {
        const config = {
            type: 'oauth2', host: '127.0.0.1', port: 9, auth: { user: TEST_USER }, maxRetries: 0,
            connectionTimeout: 1000,
            oauth2: { tenantId: 't', cloud: 'https://login.example.invalid', scope: 'https://outlook.office365.com/.default',
                clientId: 'c', clientSecret: 'x', proxy: proxy.url, timeout: 2000 }
        };
        const transport = createTransport(config);
        await transport.getAccessToken().catch(() => {});
        await transport.close();
        return proxy.connects.some(c => c.target === 'login.example.invalid:443');
    } finally {
        await proxy.close();
    }
}
const PROXY_HONOURED = await proxyIsHonoured();
const NAMED_CLOUD = { ...T, skip: PROXY_HONOURED ? false : 'oauth2.proxy is not honoured: not risking a real login host' };

test('oauth2.proxy is honoured for https token URLs (precondition of the named-cloud tests)', T, () => {
    assert.equal(PROXY_HONOURED, true);
});

test("tenantId + cloud: 'http://127.0.0.1:PORT' (authority URL) -> POST /test-tenant/oauth2/v2.0/token; mail delivered", T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    const transport = env.track(createTransport(tenantConfig(env, { tenantId: 'test-tenant', cloud: env.token.origin })));
    await transport.sendMail(mail(1));
    assert.equal(env.token.requests.length, 1);
    assert.equal(env.token.requests[0].method, 'POST');
    assert.equal(env.token.requests[0].path, '/test-tenant/oauth2/v2.0/token');
    assert.equal(env.smtp.messages.length, 1);
});

test('tenantId + an authority URL without scope -> ECONFIG naming mail.smtp.oauth2.scope (no default scope for a custom authority)', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    let err;
    try {
        createTransport(tenantConfig(env, { tenantId: 'test-tenant', cloud: env.token.origin }, { dropScope: true }));
    } catch (e) {
        err = e;
    }
    assertCode(err, 'ECONFIG');
    assert.match(err.message, /mail\.smtp\.oauth2\.scope/);
    assert.equal(env.token.requests.length, 0);
});

test('host (token URL) without scope -> ECONFIG naming mail.smtp.oauth2.scope', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    let err;
    try {
        createTransport(withoutPath(env.config(), 'oauth2.scope'));
    } catch (e) {
        err = e;
    }
    assertCode(err, 'ECONFIG');
    assert.match(err.message, /mail\.smtp\.oauth2\.scope/);
});

test("cloud: 'usgov' without host -> the client asks the proxy for CONNECT login.microsoftonline.us:443; proxy refuses (502) -> EOAUTH2", NAMED_CLOUD, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    const proxy = await startProxyFor(t, { connect: 'refuse' });
    const transport = env.track(
        createTransport(tenantConfig(env, { tenantId: 'contoso-tenant', cloud: 'usgov', proxy: proxy.url }, { dropScope: true }))
    );
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, 'EOAUTH2');
    assertNoSecrets(err, { 'client secret': secretForms(TEST_CLIENT_SECRET) });
    assert.ok(proxy.connects.length >= 1, 'the proxy was asked');
    for (const c of proxy.connects) {
        assert.equal(`CONNECT ${c.target}`, 'CONNECT login.microsoftonline.us:443');
    }
    // A refused tunnel is a network error: transient, so 3 attempts.
    assert.equal(proxy.connects.length, 3);
    assert.equal(proxy.forwarded.length, 0, 'nothing was sent in clear text');
    assert.equal(env.token.requests.length, 0);
    assert.equal(env.smtp.authAttempts.length, 0);
});

for (const { cloud, host, scope } of CLOUDS) {
    test(`cloud: '${cloud}' without host/scope -> https://${host}/<tenant>/oauth2/v2.0/token with scope ${scope} (through an intercepting test proxy)`, NAMED_CLOUD, async t => {
        // The token server plays the cloud's login host behind the proxy.
        const env = await startEnv({ token: { tenant: 'contoso-tenant', scope } });
        t.after(() => env.close());
        const proxy = await startProxyFor(t, { connect: 'mitm', pki: makeServerPki([host]), upstream: env.token.origin });
        const transport = env.track(
            createTransport(tenantConfig(env, { tenantId: 'contoso-tenant', cloud, proxy: proxy.url }, { dropScope: true }))
        );
        await transport.sendMail(mail(1));

        assert.deepEqual(
            proxy.connects.map(c => c.target),
            [`${host}:443`]
        );
        assert.equal(proxy.tunneled.length, 1);
        const inside = proxy.tunneled[0];
        assert.equal(inside.servername, host, 'SNI names the login host');
        assert.equal(inside.method, 'POST');
        assert.equal(inside.path, '/contoso-tenant/oauth2/v2.0/token');
        assert.equal(inside.headers.host, host);
        assert.equal(env.token.requests.length, 1);
        assert.equal(env.token.requests[0].form.scope, scope, `the ${cloud} cloud's Exchange scope is the default`);
        assert.equal(env.smtp.messages.length, 1);
        assert.equal(env.smtp.authAttempts.at(-1).accessToken, env.token.issued[0]);
    });
}

test('a proxy presenting a certificate for another name -> EOAUTH2, and no request is readable by the proxy', NAMED_CLOUD, async t => {
    const env = await startEnv({ token: { tenant: 'contoso-tenant', scope: CLOUDS[1].scope } });
    t.after(() => env.close());
    // Signed by the trusted test CA, but not for login.microsoftonline.us.
    const proxy = await startProxyFor(t, { connect: 'mitm', pki: makeServerPki(['proxy.example.net']), upstream: env.token.origin });
    const transport = env.track(
        createTransport(tenantConfig(env, { tenantId: 'contoso-tenant', cloud: 'usgov', proxy: proxy.url }, { dropScope: true }))
    );
    const err = await rejection(transport.sendMail(mail(1)));
    assertCode(err, ['EOAUTH2', 'ETLS']);
    assert.ok(proxy.connects.length >= 1);
    assert.equal(proxy.tunneled.length, 0, 'the client never sent the request (and its secret) to the wrong peer');
    assert.equal(env.token.requests.length, 0);
});

// A proxy would receive a plain-http token request, secret included, in clear text (this
// test once asserted that it did).
test('oauth2.proxy with an http://127.0.0.1 token URL -> ECONFIG naming mail.smtp.oauth2.proxy; nothing reaches the proxy', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    const proxy = await startProxyFor(t, { connect: 'refuse' });
    let err;
    try {
        createTransport(env.config({ oauth2: { proxy: proxy.url } }));
    } catch (e) {
        err = e;
    }
    assertCode(err, 'ECONFIG');
    assert.match(err.message, /^mail\.smtp\.oauth2\.proxy cannot be used with an http:\/\/ token URL/);
    assert.equal(proxy.forwarded.length + proxy.connects.length, 0);
    assert.equal(env.token.requests.length, 0);
});

test('oauth2.proxy that is not a URL -> ECONFIG naming mail.smtp.oauth2.proxy', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    let err;
    try {
        createTransport(env.config({ oauth2: { proxy: 'not a proxy url' } }));
    } catch (e) {
        err = e;
    }
    assertCode(err, 'ECONFIG');
    assert.match(err.message, /mail\.smtp\.oauth2\.proxy/);
});

/** Runs one send in a child node process with `env` added; resolves with its error code line. */
function sendInChild(config, env) {
    const script = `
        const { createTransport } = require(process.env.SMTP_OAUTH_TRANSPORT_PATH_FOR_CHILD);
        const config = JSON.parse(process.env.SMTP_OAUTH_TEST_CONFIG);
        createTransport(config)
            .sendMail({ from: config.auth.user, to: 'rcpt@example.com', subject: 'child', text: 'x' })
            .then(() => console.log('RESULT SENT'), err => console.log('RESULT ' + err.code));
    `;
    const childEnv = { ...process.env, ...env, SMTP_OAUTH_TRANSPORT_PATH_FOR_CHILD: TRANSPORT_PATH, SMTP_OAUTH_TEST_CONFIG: JSON.stringify(config) };
    for (const name of ['NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy', 'HTTP_PROXY', 'http_proxy', 'https_proxy']) {
        if (!(name in env)) {
            delete childEnv[name];
        }
    }
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, ['-e', script], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let errText = '';
        child.stdout.on('data', d => (out += d));
        child.stderr.on('data', d => (errText += d));
        const guard = setTimeout(() => child.kill('SIGKILL'), 15000);
        child.on('error', reject);
        child.on('close', code => {
            clearTimeout(guard);
            const line = out.split('\n').find(l => l.startsWith('RESULT '));
            if (!line) {
                return reject(new Error(`child exited ${code} without a result: ${out} ${errText}`));
            }
            resolve(line.slice('RESULT '.length));
        });
    });
}

test('HTTPS_PROXY in the environment is honoured for the token request (child process)', T, async t => {
    // An authority under the reserved .invalid TLD: should the variable be ignored, the name
    // does not resolve and nothing is contacted.
    const env = await startEnv();
    t.after(() => env.close());
    const proxy = await startProxyFor(t, { connect: 'refuse' });
    const config = tenantConfig(env, { tenantId: 'contoso-tenant', cloud: 'https://login.smtp-oauth-test.invalid' });
    const result = await sendInChild(config, { HTTPS_PROXY: proxy.url });
    assert.equal(result, 'EOAUTH2');
    assert.ok(proxy.connects.length >= 1, 'the proxy from HTTPS_PROXY was used');
    for (const c of proxy.connects) {
        assert.equal(c.target, 'login.smtp-oauth-test.invalid:443');
    }
    assert.equal(env.token.requests.length, 0);
});

test('HTTP_PROXY / ALL_PROXY in the environment never carry an http:// (loopback) token request: sent directly, the proxy sees nothing (child process)', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    const proxy = await startProxyFor(t, { connect: 'refuse' });
    for (const variables of [{ HTTP_PROXY: proxy.url, http_proxy: proxy.url }, { ALL_PROXY: proxy.url, all_proxy: proxy.url }]) {
        const result = await sendInChild(env.config(), variables);
        assert.equal(result, 'SENT', Object.keys(variables).join(', '));
    }
    assert.equal(proxy.forwarded.length, 0, 'no token request went through the proxy in clear text');
    assert.equal(proxy.connects.length, 0);
    assert.equal(env.token.requests.length, 2);
    assert.equal(env.smtp.messages.length, 2);
});
