// Credentials without a secret, part 2: managed identity. The token comes from the
// platform's endpoint, served here on 127.0.0.1 in each documented shape (IMDS, App Service,
// Azure Arc); 169.254.169.254 is never reached: each test names its endpoint through
// oauth2.managedIdentityEndpoint or the platform's environment variables (in a child process).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import util from 'node:util';
import { assertNoLeak, captureLogger, canaryForms } from './support/canary.mjs';
import { loadTransport, tasConfig, TEST_USER } from './support/config.mjs';
import { assertCode, exposedText, rejection } from './support/errors.mjs';
import { startIdentityServer } from './support/identity-server.mjs';
import { printed, runSecretlessChild } from './support/secretless-child.mjs';
import { startSmtpServer } from './support/smtp-server.mjs';
import { closedPort, sendJson } from './support/token-server.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };
const RESOURCE = 'https://outlook.office365.com';
const mail = n => ({ from: TEST_USER, to: 'rcpt@example.com', subject: `message ${n}`, text: `body ${n}` });
const IDENTITY_HEADER = 'CanaryIdentityHeader~7Gd2';
const ARC_KEY = 'CanaryArcKey~3Jk9';

/** Every form of the tokens `identity` issued and of the platform's own secrets. */
const miSecrets = identity => ({
    ...canaryForms({ token: { issued: identity.issued } }),
    'identity header': [IDENTITY_HEADER],
    'arc key': [ARC_KEY]
});

/**
 * A managed identity endpoint of `kind` and an SMTP server that accepts its tokens.
 * `config(managedIdentity, extra)`: a TAS config with no client id, secret or token URL.
 */
async function identityEnv(t, opts = {}) {
    const identity = await startIdentityServer({ identityHeader: IDENTITY_HEADER, arcKey: ARC_KEY, ...opts });
    t.after(() => identity.close());
    const smtp = await startSmtpServer({ user: TEST_USER, validTokens: () => identity.issued });
    t.after(() => smtp.close());
    const transports = [];
    t.after(() => Promise.all(transports.map(transport => transport.close())));
    const config = (managedIdentity = true, oauth2 = {}) => {
        const base = tasConfig({ smtpPort: smtp.port, tokenUrl: 'unused' });
        const { host, clientId, clientSecret, ...rest } = base.oauth2;
        return { ...base, oauth2: { ...rest, managedIdentity, ...oauth2 } };
    };
    const local = (managedIdentity = true, oauth2 = {}) => config(managedIdentity, { managedIdentityEndpoint: identity.url, ...oauth2 });
    const track = transport => {
        transports.push(transport);
        return transport;
    };
    return { identity, smtp, config, local, track };
}

test('IMDS-shaped endpoint: GET with Metadata: true, api-version 2018-02-01 and the resource; string lifetimes; the token is cached and sent', T, async t => {
    const { identity, smtp, local, track } = await identityEnv(t);
    const log = captureLogger();
    const transport = track(createTransport({ ...local(true), logger: log.logger, debug: true }));
    await transport.sendMail(mail(1));
    await transport.sendMail(mail(2));
    assert.equal(smtp.messages.length, 2);
    assert.equal(identity.requests.length, 1, 'one token for both messages');
    const [request] = identity.requests;
    assert.equal(request.method, 'GET');
    assert.equal(request.headers.metadata, 'true');
    assert.deepEqual(request.query, { 'api-version': '2018-02-01', resource: RESOURCE });
    assert.equal(request.headers.authorization, undefined);
    assert.deepEqual(smtp.authAttempts.map(a => a.accessToken), [identity.issued[0], identity.issued[0]]);

    const { expiresAt } = await transport.getAccessToken();
    const lifetime = expiresAt.getTime() - Date.now();
    assert.ok(lifetime > 3500_000 && lifetime <= 3599_000, `the string expires_in was read: ${lifetime} ms`);
    const report = await transport.inspectToken();
    assert.equal(report.credential.kind, 'managedIdentity');
    assert.equal(
        report.credential.source,
        `the imds managed identity endpoint ${identity.url} (chosen by mail.smtp.oauth2.managedIdentityEndpoint), system-assigned identity`
    );
    assert.deepEqual(report.credential.environment, []);
    assert.equal(report.credential.assertion, null);

    await log.settle();
    const secrets = miSecrets(identity);
    assertNoLeak(log.text(), secrets, 'the log');
    assertNoLeak(exposedText(report), secrets, 'inspectToken()');
    assertNoLeak(util.inspect(transport, { showHidden: true, depth: 5 }), secrets, 'util.inspect(transport)');
});

test('a user-assigned identity: client_id, object_id or msi_res_id on IMDS', T, async t => {
    const { identity, local, track } = await identityEnv(t);
    for (const [managedIdentity, parameter] of [
        [{ clientId: 'mi-client-id' }, { client_id: 'mi-client-id' }],
        [{ objectId: 'mi-object-id' }, { object_id: 'mi-object-id' }],
        [{ resourceId: '/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mail' }, {
            msi_res_id: '/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mail'
        }]
    ]) {
        await track(createTransport(local(managedIdentity))).getAccessToken();
        assert.deepEqual(identity.requests.at(-1).query, { 'api-version': '2018-02-01', resource: RESOURCE, ...parameter });
    }
});

test('App Service (IDENTITY_ENDPOINT + IDENTITY_HEADER): X-IDENTITY-HEADER, api-version 2019-08-01, principal_id; an answer with only expires_on', T, async t => {
    const { identity, smtp, config } = await identityEnv(t, { kind: 'appService' });
    const result = await runSecretlessChild('send', config({ objectId: 'mi-object-id' }), {
        env: { IDENTITY_ENDPOINT: identity.url, IDENTITY_HEADER: IDENTITY_HEADER }
    });
    assert.equal(printed(result, 'ERROR '), undefined, result.stdout);
    assert.ok(result.lines.includes('SENT'), result.stdout + result.stderr);
    assert.equal(smtp.messages.length, 1);
    assert.equal(identity.requests.length, 1);
    const [request] = identity.requests;
    assert.equal(request.headers['x-identity-header'], IDENTITY_HEADER);
    assert.equal(request.headers.metadata, undefined);
    assert.deepEqual(request.query, { 'api-version': '2019-08-01', resource: RESOURCE, principal_id: 'mi-object-id' });
    assert.ok(result.lines.includes(`LOG info OAuth2 credential from the environment (IDENTITY_ENDPOINT, IDENTITY_HEADER): the appService managed identity endpoint ${identity.url} (chosen by IDENTITY_ENDPOINT and IDENTITY_HEADER (App Service)), user-assigned, object id mi-object-id identity`), result.stdout);
    const credential = printed(result, 'CREDENTIAL ');
    assert.deepEqual(credential.environment, ['IDENTITY_ENDPOINT', 'IDENTITY_HEADER']);
    assertNoLeak(`${result.stdout}\n${result.stderr}`, miSecrets(identity), 'the child\'s output');
});

const canMount = spawnSync('unshare', ['-m', '--', 'sh', '-c', 'mount -t tmpfs tmpfs /var/opt'], { stdio: 'ignore' }).status === 0;

test('Azure Arc (IDENTITY_ENDPOINT + IMDS_ENDPOINT): the 401 challenge names a key file in the agent directory; its content is sent back as Basic auth', { ...T, skip: !canMount && 'needs a private mount namespace (root and unshare -m) to place the key file' }, async t => {
    const realm = '/var/opt/azcmagent/tokens/test-challenge.key';
    const { identity, smtp, config } = await identityEnv(t, { kind: 'azureArc', arcRealm: realm });
    // The key file exists only inside the child's mount namespace, as the Arc agent's would.
    const shellSetup = `mount -t tmpfs tmpfs /var/opt && mkdir -p /var/opt/azcmagent/tokens && printf '%s\\n' '${ARC_KEY}' > ${realm}`;
    const result = await runSecretlessChild('send', config(true), {
        env: { IDENTITY_ENDPOINT: identity.url, IMDS_ENDPOINT: new URL(identity.url).origin },
        shellSetup
    });
    assert.equal(printed(result, 'ERROR '), undefined, result.stdout + result.stderr);
    assert.ok(result.lines.includes('SENT'), result.stdout + result.stderr);
    assert.equal(smtp.messages.length, 1);
    assert.deepEqual(identity.requests.map(r => r.headers.authorization), [undefined, `Basic ${ARC_KEY}`]);
    assert.deepEqual(identity.requests[1].query, { 'api-version': '2019-11-01', resource: RESOURCE });
    assert.equal(identity.requests[1].headers.metadata, 'true');
    assertNoLeak(`${result.stdout}\n${result.stderr}`, miSecrets(identity), 'the child\'s output');
});

test('Azure Arc: a challenge naming a file outside the agent directory is refused (EOAUTH2), and nothing is read or sent', T, async t => {
    const { identity, config } = await identityEnv(t, { kind: 'azureArc', arcRealm: '/etc/hostname' });
    const result = await runSecretlessChild('send', config(true), {
        env: { IDENTITY_ENDPOINT: identity.url, IMDS_ENDPOINT: new URL(identity.url).origin }
    });
    const err = printed(result, 'ERROR ');
    assert.equal(err.code, 'EOAUTH2');
    assert.equal(
        err.message,
        `the Azure Arc identity endpoint ${identity.url} named the challenge file /etc/hostname, which is not a .key file in /var/opt/azcmagent/tokens: refused`
    );
    assert.equal(identity.requests.length, 1, 'no second request');
});

test('IMDS unreachable: EOAUTH2 whose hint says this is not an Azure VM', T, async t => {
    const { local, track } = await identityEnv(t);
    const port = await closedPort();
    const transport = track(createTransport(local(true, { managedIdentityEndpoint: `http://127.0.0.1:${port}/metadata/identity/oauth2/token` })));
    const err = await rejection(transport.getAccessToken());
    assertCode(err, 'EOAUTH2');
    assert.match(err.message, /^the token request to http:\/\/127\.0\.0\.1:\d+\/metadata\/identity\/oauth2\/token failed/);
    assert.match(err.hint, /is unreachable: this process is not running on an Azure VM or scale set/);
});

test('an identity the endpoint does not know (400): EOAUTH2 whose hint says to assign it', T, async t => {
    const { identity, local, track } = await identityEnv(t);
    identity.setHandler((record, res) => sendJson(res, 400, { error: 'invalid_request', error_description: 'Identity not found' }));
    const err = await rejection(track(createTransport(local({ clientId: 'unknown-mi' }))).getAccessToken());
    assertCode(err, 'EOAUTH2');
    assert.equal(err.message, 'the token endpoint refused the request (400 invalid_request): Identity not found');
    assert.match(err.hint, /has no user-assigned, client id unknown-mi managed identity: assign it/);
    assert.equal(identity.requests.length, 1, 'a 400 is not retried');
});

test('IMDS under load: a 5xx is retried; a 429 is reported with its Retry-After and no request is made before it', T, async t => {
    const { identity, local, track } = await identityEnv(t);
    let calls = 0;
    identity.setHandler((record, res, next) => (++calls === 1 ? sendJson(res, 500, { error: 'server_error' }) : next()));
    await track(createTransport(local(true))).getAccessToken();
    assert.equal(identity.requests.length, 2, 'the 500 was retried once');

    identity.setHandler((record, res) => sendJson(res, 429, { error: 'too_many_requests' }, { 'Retry-After': '30' }));
    const throttled = track(createTransport(local(true)));
    const err = await rejection(throttled.getAccessToken());
    assertCode(err, 'EOAUTH2');
    assert.equal(err.statusCode, 429);
    assert.ok(err.retryAfter > 25 && err.retryAfter <= 30, `retryAfter ${err.retryAfter}`);
    const before = identity.requests.length;
    assertCode(await rejection(throttled.getAccessToken()), 'EOAUTH2');
    assert.equal(identity.requests.length, before, 'no request during the wait');
});

test('managedIdentity config errors: with another credential, with clientId, a remote plain-http endpoint', T, async t => {
    const { config } = await identityEnv(t);
    for (const [oauth2, message] of [
        [{ clientSecret: 'x' }, 'mail.smtp.oauth2 names more than one credential (clientSecret, managedIdentity): keep exactly one'],
        [{ clientId: 'c' }, 'mail.smtp.oauth2.clientId is not used with managedIdentity (the token comes from the managed identity endpoint); for a user-assigned identity give managedIdentity: { clientId }'],
        [{ managedIdentityEndpoint: 'http://10.0.0.4/token' }, 'mail.smtp.oauth2.managedIdentityEndpoint must be an https:// URL, or http:// on a loopback or link-local address (169.254.169.254), got "http://10.0.0.4/token"']
    ]) {
        assert.throws(() => createTransport(config(true, oauth2)), err => {
            assertCode(err, 'ECONFIG');
            assert.equal(err.message, message);
            return true;
        });
    }
});
