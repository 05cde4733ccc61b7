// Certificate credentials: the client_assertion JWT, verified by the token endpoint with
// `jose` against the registered certificate, exactly as Entra ID would: PS256 + x5t#S256
// (from `certificate` or `thumbprintSha256`), RS256 + x5t (SHA-1 `thumbprint`); PKCS#8 and
// PKCS#1 keys; a key that does not match the registered certificate is refused (AADSTS700027).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { decodeProtectedHeader, importX509, jwtVerify } from 'jose';
import { makeClientCertificate } from './support/certs.mjs';
import { loadTransport, TEST_CLIENT_ID, TEST_SCOPE, TEST_USER, withoutPath } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { assertCode, assertNoSecrets, rejection } from './support/errors.mjs';
import { entraErrorBody, sendJson } from './support/token-server.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

const mail = n => ({ from: TEST_USER, to: 'rcpt@example.com', subject: `message ${n}`, text: `body ${n}` });

// The app registration's certificate, and an unrelated key pair.
const registered = makeClientCertificate({ commonName: 'registered app certificate' });
const stranger = makeClientCertificate({ commonName: 'some other key' });

/**
 * Checks a client_credentials request with a client assertion the way Entra ID does, against
 * the certificate registered for the app. Throws (an AssertionError) on any problem.
 *
 * @param {object} form     the form fields of the request
 * @param {string} tokenUrl the URL the request was sent to (the expected `aud`)
 * @param {'PS256'|'RS256'} alg
 * @returns {Promise<{ header: object, payload: object }>}
 */
async function checkAssertion(form, tokenUrl, alg) {
    assert.equal(form.grant_type, 'client_credentials');
    assert.equal(form.client_id, TEST_CLIENT_ID);
    assert.equal(form.scope, TEST_SCOPE);
    assert.equal(form.client_assertion_type, JWT_BEARER);
    assert.equal(form.client_secret, undefined, 'no client_secret with certificate credentials');
    assert.equal(typeof form.client_assertion, 'string');
    const assertion = form.client_assertion;

    const header = decodeProtectedHeader(assertion);
    if (alg === 'PS256') {
        assert.deepEqual(header, { alg: 'PS256', typ: 'JWT', 'x5t#S256': registered.sha256.toString('base64url') });
    } else {
        const sha1 = crypto.createHash('sha1').update(registered.der).digest('base64url');
        assert.deepEqual(header, { alg: 'RS256', typ: 'JWT', x5t: sha1 });
    }

    const key = await importX509(registered.certPem, alg);
    const { payload } = await jwtVerify(assertion, key, {
        algorithms: [alg],
        audience: tokenUrl,
        issuer: TEST_CLIENT_ID,
        subject: TEST_CLIENT_ID
    });
    const now = Math.floor(Date.now() / 1000);
    assert.equal(payload.aud, tokenUrl);
    assert.equal(payload.iss, TEST_CLIENT_ID);
    assert.equal(payload.sub, TEST_CLIENT_ID);
    assert.match(String(payload.jti), UUID_V4, 'jti is a uuid v4');
    assert.equal(typeof payload.iat, 'number');
    assert.equal(typeof payload.nbf, 'number');
    assert.equal(typeof payload.exp, 'number');
    assert.ok(payload.exp - payload.iat <= 600, `exp - iat = ${payload.exp - payload.iat} s (at most 10 minutes)`);
    assert.ok(payload.exp > now, 'not expired');
    assert.ok(payload.nbf <= now, `nbf ${payload.nbf} <= now ${now}`);
    assert.ok(Math.abs(payload.iat - now) <= 5, `iat ${payload.iat} is now (${now})`);
    return { header, payload };
}

/**
 * A token server + SMTP server whose token endpoint only issues a token for a valid
 * assertion signed by `registered`'s key; otherwise 401 invalid_client AADSTS700027.
 */
async function setupCertificateEnv(t, alg = 'PS256') {
    const env = await startEnv();
    t.after(() => env.close());
    const checked = [];
    env.token.setHandler(async (req, form, res) => {
        try {
            checked.push(await checkAssertion(form, env.token.url, alg));
        } catch (err) {
            checked.push({ error: err });
            return sendJson(
                res,
                401,
                entraErrorBody('invalid_client', 700027, `Client assertion failed signature validation. (test endpoint: ${err.message.split('\n')[0]})`)
            );
        }
        return env.token.respondWithToken(res, { clientId: form.client_id });
    });
    /** env.config() with certificate credentials instead of the secret. */
    const certConfig = oauth2 => withoutPath(env.config({ oauth2 }), 'oauth2.clientSecret');
    return { env, checked, certConfig };
}

function assertAllChecksPassed(checked) {
    for (const check of checked) {
        if (check.error) {
            throw check.error;
        }
    }
}

test('privateKey (PKCS#8) + certificate -> PS256 assertion with x5t#S256, verified by the endpoint; mail delivered; fresh jti per request', T, async t => {
    const { env, checked, certConfig } = await setupCertificateEnv(t);
    const config = certConfig({ privateKey: registered.keyPkcs8Pem, certificate: registered.certPem });

    const transport = env.track(createTransport(config));
    const info = await transport.sendMail(mail(1));
    assertAllChecksPassed(checked);
    assert.match(info.response, /^250/);
    assert.equal(env.smtp.messages.length, 1);
    assert.equal(env.token.requests.length, 1);
    assert.equal(checked.length, 1);
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, env.token.issued[0]);

    // A second transport (same config) makes a second request: a new assertion, new jti.
    const other = env.track(createTransport(config));
    await other.sendMail(mail(2));
    assertAllChecksPassed(checked);
    assert.equal(env.token.requests.length, 2);
    assert.equal(checked.length, 2);
    assert.notEqual(checked[1].payload.jti, checked[0].payload.jti, 'jti differs between requests');
    assert.notEqual(env.token.requests[1].form.client_assertion, env.token.requests[0].form.client_assertion);
});

test('privateKey (PKCS#1 "RSA PRIVATE KEY") + certificate -> the same PS256 assertion, mail delivered', T, async t => {
    const { env, checked, certConfig } = await setupCertificateEnv(t);
    assert.match(registered.keyPkcs1Pem, /^-----BEGIN RSA PRIVATE KEY-----/);
    const transport = env.track(
        createTransport(certConfig({ privateKey: registered.keyPkcs1Pem, certificate: registered.certPem }))
    );
    await transport.sendMail(mail(1));
    assertAllChecksPassed(checked);
    assert.equal(env.smtp.messages.length, 1);
    assert.equal(env.token.requests.length, 1);
});

test('privateKey and certificate as Buffers -> mail delivered', T, async t => {
    const { env, checked, certConfig } = await setupCertificateEnv(t);
    const transport = env.track(
        createTransport(certConfig({ privateKey: Buffer.from(registered.keyPkcs8Pem), certificate: Buffer.from(registered.certPem) }))
    );
    await transport.sendMail(mail(1));
    assertAllChecksPassed(checked);
    assert.equal(env.smtp.messages.length, 1);
});

test('a key that does not match the registered certificate -> 401 invalid_client AADSTS700027 -> EOAUTH2 with a hint; key and assertion not exposed', T, async t => {
    const { env, checked, certConfig } = await setupCertificateEnv(t);
    // The header names the registered certificate, but the signature is made with another key.
    const transport = env.track(createTransport(certConfig({ privateKey: stranger.keyPkcs8Pem, certificate: registered.certPem })));
    const err = await rejection(transport.sendMail(mail(1)));

    assertCode(err, 'EOAUTH2');
    assert.equal(err.oauthError, 'invalid_client');
    assert.deepEqual(err.oauthErrorCodes, [700027]);
    assert.equal(err.statusCode, 401);
    assert.equal(typeof err.hint, 'string');
    assert.match(err.hint, /certificate/i);
    assert.equal(env.token.requests.length, 1, 'not retried');
    assert.equal(checked.length, 1);
    assert.ok(checked[0].error, 'the endpoint refused the signature');
    assert.match(checked[0].error.message, /signature/i);

    const keyBody = stranger.keyPkcs8Pem.split('\n').filter(line => line && !line.startsWith('-----'));
    assertNoSecrets(err, {
        'private key (PEM)': stranger.keyPkcs8Pem,
        'private key (a line of its base64)': keyBody[5],
        'client assertion': env.token.requests[0].form.client_assertion
    });
    assert.equal(env.smtp.authAttempts.length, 0);
});

test('privateKey + thumbprintSha256 (hex) -> PS256 with x5t#S256, mail delivered', T, async t => {
    const { env, checked, certConfig } = await setupCertificateEnv(t);
    const transport = env.track(
        createTransport(certConfig({ privateKey: registered.keyPkcs8Pem, thumbprintSha256: registered.sha256.toString('hex').toUpperCase() }))
    );
    await transport.sendMail(mail(1));
    assertAllChecksPassed(checked);
    assert.equal(checked.length, 1);
    assert.equal(env.smtp.messages.length, 1);
});

test('privateKey + thumbprintSha256 (base64url) -> PS256 with x5t#S256, mail delivered', T, async t => {
    const { env, checked, certConfig } = await setupCertificateEnv(t);
    const transport = env.track(
        createTransport(certConfig({ privateKey: registered.keyPkcs8Pem, thumbprintSha256: registered.sha256.toString('base64url') }))
    );
    await transport.sendMail(mail(1));
    assertAllChecksPassed(checked);
    assert.equal(env.smtp.messages.length, 1);
});

test('privateKey + SHA-1 thumbprint (hex, as the Azure portal shows it) -> RS256 with x5t, mail delivered', T, async t => {
    const { env, checked, certConfig } = await setupCertificateEnv(t, 'RS256');
    assert.match(registered.sha1Hex, /^[0-9A-F]{40}$/);
    const transport = env.track(createTransport(certConfig({ privateKey: registered.keyPkcs8Pem, thumbprint: registered.sha1Hex })));
    await transport.sendMail(mail(1));
    assertAllChecksPassed(checked);
    assert.equal(checked.length, 1);
    assert.equal(checked[0].header.alg, 'RS256');
    assert.equal(env.smtp.messages.length, 1);
});

test('certificate credentials with tenantId + cloud authority URL: aud is the built token URL', T, async t => {
    const { env, checked, certConfig } = await setupCertificateEnv(t);
    const config = withoutPath(
        certConfig({ tenantId: 'test-tenant', cloud: env.token.origin, privateKey: registered.keyPkcs8Pem, certificate: registered.certPem }),
        'oauth2.host'
    );
    const transport = env.track(createTransport(config));
    await transport.sendMail(mail(1));
    assertAllChecksPassed(checked); // jwtVerify checked aud === env.token.url
    assert.equal(env.token.requests[0].path, '/test-tenant/oauth2/v2.0/token');
    assert.equal(env.smtp.messages.length, 1);
});
