// Credentials without a secret, part 1: client assertions someone else makes. A federated
// token file (workload identity federation: the platform rotates it, so it is read for every
// token request), Azure Workload Identity's environment variables, and an
// `oauth2.clientAssertion` callback. The local token endpoint checks each request's form the
// way Entra ID reads it; the assertion (a credential) must never appear in any output.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import util from 'node:util';
import { captureLogger, assertNoLeak } from './support/canary.mjs';
import { loadTransport, TEST_CLIENT_ID, TEST_SCOPE, TEST_USER, withoutPath } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { assertCode, assertNoSecrets, exposedText, rejection, secretForms } from './support/errors.mjs';
import { printed, runSecretlessChild } from './support/secretless-child.mjs';
import { entraErrorBody, sendJson } from './support/token-server.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const mail = n => ({ from: TEST_USER, to: 'rcpt@example.com', subject: `message ${n}`, text: `body ${n}` });

const ISSUER = 'https://oidc.cluster.example/1234';
const SUBJECT = 'system:serviceaccount:mail:sender';
const AUDIENCE = 'api://AzureADTokenExchange';

/** A projected service account token's shape: a JWT with the claims Entra ID matches. */
function federatedToken(marker, { exp = Math.floor(Date.now() / 1000) + 3600 } = {}) {
    const part = value => Buffer.from(JSON.stringify(value)).toString('base64url');
    const signature = Buffer.from(`CanaryAssertionSignature-${marker}`).toString('base64url');
    return `${part({ alg: 'RS256', kid: 'k1' })}.${part({ iss: ISSUER, sub: SUBJECT, aud: [AUDIENCE], exp, marker })}.${signature}`;
}

/** label -> forms of each assertion (the signature part alone identifies it too). */
const assertionForms = assertions =>
    Object.fromEntries(assertions.map((a, i) => [`assertion ${i + 1}`, [...secretForms(a), a.split('.')[2]]]));

function tempFile(t, content) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'federated-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'azure-identity-token');
    if (content !== undefined) {
        fs.writeFileSync(file, content);
    }
    return file;
}

/**
 * The test servers; the token endpoint accepts any client assertion of the JWT-bearer type
 * for TEST_CLIENT_ID (recording it) and refuses a client_secret. `expiresIn: 1` makes every
 * send after a second ask for a new token.
 */
async function assertionEnv(t, { expiresIn = 3599, refuse } = {}) {
    const env = await startEnv({ token: { expiresIn } });
    t.after(() => env.close());
    const received = [];
    env.token.setHandler((req, form, res) => {
        assert.equal(form.grant_type, 'client_credentials');
        assert.equal(form.client_id, TEST_CLIENT_ID);
        assert.equal(form.scope, TEST_SCOPE);
        assert.equal(form.client_assertion_type, JWT_BEARER);
        assert.equal(form.client_secret, undefined, 'no client_secret is sent');
        received.push(form.client_assertion);
        if (refuse) {
            return refuse(res);
        }
        return env.token.respondWithToken(res, { clientId: form.client_id });
    });
    // Functions cannot go through env.config() (it deep-copies): they are added afterwards.
    const config = oauth2 => {
        const base = withoutPath(env.config(), 'oauth2.clientSecret');
        return { ...base, oauth2: { ...base.oauth2, ...oauth2 } };
    };
    return { env, received, config };
}

test('clientAssertionFile: read afresh for every token request; a file that changes between two requests is sent in both versions, in order', T, async t => {
    const { env, received, config } = await assertionEnv(t, { expiresIn: 1 });
    const first = federatedToken('first');
    const second = federatedToken('second');
    const file = tempFile(t, first);
    const log = captureLogger();
    const transport = env.track(createTransport({ ...config({ clientAssertionFile: file }), logger: log.logger, debug: true }));

    await transport.sendMail(mail(1));
    fs.writeFileSync(file, `${second}\n`); // the platform rotated it (with a newline, as files have)
    await sleep(1100); // the 1 s token is stale now
    await transport.sendMail(mail(2));

    assert.deepEqual(received, [first, second]);
    assert.equal(env.smtp.messages.length, 2);
    const report = await transport.inspectToken();
    assert.equal(report.credential.kind, 'clientAssertionFile');
    assert.match(report.credential.source, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(mail\\.smtp\\.oauth2\\.clientAssertionFile\\)`));
    assert.deepEqual(report.credential.environment, []);
    assert.equal(report.credential.assertion.iss, ISSUER);
    assert.equal(report.credential.assertion.sub, SUBJECT);
    assert.equal(report.credential.assertion.aud, AUDIENCE);
    assert.ok(report.credential.assertion.exp instanceof Date);

    await log.settle();
    const secrets = assertionForms([first, second]);
    for (const [where, text] of [
        ['the log', log.text()],
        ['inspectToken()', exposedText(report)],
        ['util.inspect(transport)', util.inspect(transport, { showHidden: true, depth: 5 })]
    ]) {
        assertNoLeak(text, secrets, where);
    }
});

test('a missing, empty or oversized federated token file: EOAUTH2 naming the file (never its content), and no token request', T, async t => {
    const { env, received, config } = await assertionEnv(t);
    const missing = tempFile(t);
    const err = await rejection(env.track(createTransport(config({ clientAssertionFile: missing }))).sendMail(mail(1)));
    assertCode(err, 'EOAUTH2');
    assert.equal(err.message, `the federated token file ${missing} (mail.smtp.oauth2.clientAssertionFile) does not exist`);
    assert.match(err.hint, /azure\.workload\.identity\/use/);

    const empty = tempFile(t, ' \n');
    const emptyErr = await rejection(env.track(createTransport(config({ clientAssertionFile: empty }))).getAccessToken());
    assertCode(emptyErr, 'EOAUTH2');
    assert.equal(emptyErr.message, `the federated token file ${empty} (mail.smtp.oauth2.clientAssertionFile) is empty`);

    const huge = tempFile(t, `CanaryHugeAssertion.${'x'.repeat(70 * 1024)}`);
    const hugeErr = await rejection(env.track(createTransport(config({ clientAssertionFile: huge }))).getAccessToken());
    assertCode(hugeErr, 'EOAUTH2');
    assert.match(hugeErr.message, /is larger than 65536 bytes$/);
    assert.doesNotMatch(exposedText(hugeErr), /CanaryHugeAssertion/);
    assert.deepEqual(received, []);
});

test('AADSTS70021 (no matching federated identity record): EOAUTH2 whose hint shows the assertion\'s iss/sub/aud/exp, never the assertion', T, async t => {
    const { env, config } = await assertionEnv(t, {
        refuse: res =>
            sendJson(res, 400, entraErrorBody('invalid_request', 70021, 'No matching federated identity record found for presented assertion. Assertion Issuer: \'https://oidc.cluster.example/1234\'.'))
    });
    const assertion = federatedToken('refused');
    const file = tempFile(t, assertion);
    const err = await rejection(env.track(createTransport(config({ clientAssertionFile: file }))).sendMail(mail(1)));
    assertCode(err, 'EOAUTH2');
    assert.deepEqual(err.oauthErrorCodes, [70021]);
    assert.match(err.hint, /Federated credentials/);
    assert.match(err.hint, /api:\/\/AzureADTokenExchange/);
    assert.ok(
        err.hint.includes(`The assertion sent: iss=${ISSUER}, sub=${SUBJECT}, aud=${AUDIENCE}, exp=`),
        err.hint
    );
    assertNoSecrets(err, assertionForms([assertion]));
});

test('AADSTS700024 (assertion expired): EOAUTH2 whose hint names a stale token file or the clock, with how long ago it expired', T, async t => {
    const { env, config } = await assertionEnv(t, {
        refuse: res => sendJson(res, 401, entraErrorBody('invalid_client', 700024, 'Client assertion is not within its valid time range.'))
    });
    const assertion = federatedToken('stale', { exp: Math.floor(Date.now() / 1000) - 120 });
    const file = tempFile(t, assertion);
    const err = await rejection(env.track(createTransport(config({ clientAssertionFile: file }))).getAccessToken());
    assertCode(err, 'EOAUTH2');
    assert.match(err.hint, /stale/);
    assert.match(err.hint, /clock/);
    assert.match(err.hint, /exp=.* GMT \(expired 1[12]\d s ago\)/);
    assertNoSecrets(err, assertionForms([assertion]));
});

test('clientAssertion callback: called once per token request (sync or async), its result sent as the client assertion', T, async t => {
    // A 2 s token: fresh for 1 s, not used after 1.75 s.
    const { env, received, config } = await assertionEnv(t, { expiresIn: 2 });
    const issued = [];
    const clientAssertion = async () => {
        const assertion = federatedToken(`callback-${issued.length + 1}`);
        issued.push(assertion);
        return assertion;
    };
    const transport = env.track(createTransport(config({ clientAssertion })));
    await transport.sendMail(mail(1));
    await transport.sendMail(mail(2)); // the cached token: no call
    assert.equal(issued.length, 1);
    await sleep(1900);
    await transport.sendMail(mail(3));
    assert.deepEqual(received, issued);
    assert.equal(issued.length, 2);
    const { credential } = await transport.inspectToken();
    assert.equal(credential.kind, 'clientAssertion');
    assert.equal(credential.source, 'the callback mail.smtp.oauth2.clientAssertion');
    assert.equal(credential.assertion.sub, SUBJECT);

    const sync = federatedToken('sync');
    const syncTransport = env.track(createTransport(config({ clientAssertion: () => sync })));
    await syncTransport.getAccessToken();
    assert.equal(received.at(-1), sync);
});

test('a callback that throws, rejects, returns a non-string or an empty string: EOAUTH2 naming mail.smtp.oauth2.clientAssertion and why; no token request', T, async t => {
    const { env, received, config } = await assertionEnv(t);
    const leaked = federatedToken('in-an-object');
    for (const [clientAssertion, why] of [
        [() => { throw new Error('vault unreachable'); }, 'vault unreachable'],
        [async () => { throw new Error('signing service said 403'); }, 'signing service said 403'],
        [async () => ({ assertion: leaked }), 'it returned object, not a string'],
        [() => undefined, 'it returned undefined, not a string'],
        [() => '  ', 'it returned an empty string']
    ]) {
        let calls = 0;
        const counted = () => {
            calls += 1;
            return clientAssertion();
        };
        const err = await rejection(env.track(createTransport(config({ clientAssertion: counted }))).sendMail(mail(1)));
        assert.equal(calls, 1, 'a failing callback is not called again at once (no retry)');
        assertCode(err, 'EOAUTH2');
        assert.ok(err.message.startsWith('mail.smtp.oauth2.clientAssertion failed: '), err.message);
        assert.ok(err.message.includes(why), `${err.message} should say ${why}`);
        assert.match(err.hint, /clientAssertion callback must return/);
        assertNoSecrets(err, assertionForms([leaked]));
    }
    assert.deepEqual(received, []);
});

test('a callback that never settles: EOAUTH2 after oauth2.clientAssertionTimeout', T, async t => {
    const { env, received, config } = await assertionEnv(t);
    const transport = env.track(createTransport(config({ clientAssertion: () => new Promise(() => {}), clientAssertionTimeout: 300 })));
    const err = await rejection(transport.getAccessToken());
    assertCode(err, 'EOAUTH2');
    assert.equal(err.message, 'mail.smtp.oauth2.clientAssertion failed: it did not settle within 300 ms (oauth2.clientAssertionTimeout)');
    assert.deepEqual(received, []);
});

test('a transport with an assertion callback does not keep an idle process alive', T, async t => {
    const { env, received, config } = await assertionEnv(t);
    const assertion = federatedToken('child');
    const result = await runSecretlessChild('callback', config({}), { env: { SMTP_OAUTH_TEST_ASSERTION: assertion }, killAfterMs: 10000 });
    assert.equal(result.killed, false, `the child did not exit on its own; stdout: ${result.stdout} stderr: ${result.stderr}`);
    assert.deepEqual(result.lines, ['TOKEN'], result.stderr);
    assert.equal(result.code, 0);
    assert.deepEqual(received, [assertion]);
});

test('Azure Workload Identity: with no credential in the config, AZURE_FEDERATED_TOKEN_FILE and AZURE_CLIENT_ID are used, logged once and shown by inspectToken', T, async t => {
    const { env, received, config } = await assertionEnv(t);
    const assertion = federatedToken('workload');
    const file = tempFile(t, assertion);
    // The config keeps the (loopback) token URL, which wins over AZURE_TENANT_ID; it has no
    // clientId, so AZURE_CLIENT_ID supplies it.
    const bare = withoutPath(config({}), 'oauth2.clientId');
    const result = await runSecretlessChild('send', bare, {
        env: { AZURE_FEDERATED_TOKEN_FILE: file, AZURE_CLIENT_ID: TEST_CLIENT_ID, AZURE_TENANT_ID: 'workload-tenant' }
    });
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.ok(result.lines.includes('SENT'));
    assert.deepEqual(received, [assertion]);
    const notices = result.lines.filter(l => l.startsWith('LOG info OAuth2 credential from the environment'));
    assert.deepEqual(notices, [
        `LOG info OAuth2 credential from the environment (AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID): the file ${file} (AZURE_FEDERATED_TOKEN_FILE)`
    ]);
    const credential = printed(result, 'CREDENTIAL ');
    assert.equal(credential.kind, 'clientAssertionFile');
    assert.deepEqual(credential.environment, ['AZURE_FEDERATED_TOKEN_FILE', 'AZURE_CLIENT_ID']);
    assert.equal(credential.assertion.iss, ISSUER);
    assertNoLeak(`${result.stdout}\n${result.stderr}`, assertionForms([assertion]), 'the child\'s output');

    // A credential in the config wins: the variables are not used.
    const configured = federatedToken('configured');
    const configuredFile = tempFile(t, configured);
    const explicit = await runSecretlessChild('send', config({ clientAssertionFile: configuredFile }), {
        env: { AZURE_FEDERATED_TOKEN_FILE: file, AZURE_CLIENT_ID: 'other-client', AZURE_TENANT_ID: 'workload-tenant' }
    });
    assert.equal(printed(explicit, 'ERROR '), undefined, explicit.stdout);
    assert.deepEqual(printed(explicit, 'CREDENTIAL ').environment, []);
    assert.deepEqual(received, [assertion, configured]);
    assert.equal(explicit.lines.filter(l => l.includes('from the environment')).length, 0);
});

test('credentials: more than one is ECONFIG naming them; none is ECONFIG listing the choices', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    const both = env.config({ oauth2: { clientAssertionFile: '/run/token', managedIdentity: true } });
    assert.throws(() => createTransport(both), err => {
        assertCode(err, 'ECONFIG');
        assert.equal(err.message, 'mail.smtp.oauth2 names more than one credential (clientSecret, clientAssertionFile, managedIdentity): keep exactly one');
        return true;
    });
    const none = env.config({ oauth2: { clientSecret: undefined } });
    assert.throws(() => createTransport(none), err => {
        assertCode(err, 'ECONFIG');
        assert.match(err.message, /^mail\.smtp\.oauth2\.clientSecret is missing \(.*environment variable.*\); give exactly one credential: clientSecret, privateKey \(with certificate or thumbprint\), clientAssertionFile, clientAssertion or managedIdentity/);
        return true;
    });
    assert.throws(() => createTransport(env.config({ oauth2: { clientSecret: undefined, clientAssertion: 'eyJ.not.a.function' } })), err => {
        assertCode(err, 'ECONFIG');
        assert.match(err.message, /^mail\.smtp\.oauth2\.clientAssertion must be a function returning the client assertion/);
        assert.doesNotMatch(err.message, /eyJ\.not/);
        return true;
    });
});
