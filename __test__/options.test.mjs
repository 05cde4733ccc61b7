// nodemailer's SMTP transport options that map onto this transport: requireTLS, ignoreTLS,
// opportunisticTLS, service, authMethod. None of them can make credentials cross an
// unencrypted connection.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { makeClientCertificate, makeTestPki } from './support/certs.mjs';
import { loadTransport, TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_SCOPE, TEST_USER } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';
import { startSmtpServer } from './support/smtp-server.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };
const message = { from: 'relay@example.com', to: 'rcpt@example.com', subject: 'options', text: 'x' };

let env;
const servers = [];
before(async () => {
    env = await startEnv();
});
after(async () => {
    await env.close();
    await Promise.all(servers.map(server => server.close()));
});

async function relay(opts) {
    const server = await startSmtpServer({ authOptional: true, ...opts });
    servers.push(server);
    return server;
}

const relayConfig = (server, extra) => ({ host: '127.0.0.1', port: server.port, tls: { ca: makeTestPki().caPem, servername: 'localhost' }, ...extra });

test('requireTLS: a relay without STARTTLS is refused (ETLS) even without credentials; without it the message goes', T, async () => {
    const server = await relay({ noStartTls: true });
    const strict = env.track(createTransport(relayConfig(server, { requireTLS: true })));
    assertCode(await rejection(strict.sendMail(message)), 'ETLS');
    assert.equal(server.messages.length, 0);
    const lenient = env.track(createTransport(relayConfig(server)));
    await lenient.sendMail(message);
    assert.equal(server.messages.length, 1);
});

test('ignoreTLS: no STARTTLS to a relay that offers it; refused with credentials', T, async () => {
    const server = await relay({});
    const plain = env.track(createTransport(relayConfig(server, { ignoreTLS: true })));
    await plain.sendMail(message);
    assert.equal(server.messages.at(-1).secure, false);
    const usual = env.track(createTransport(relayConfig(server)));
    await usual.sendMail(message);
    assert.equal(server.messages.at(-1).secure, true);

    assert.throws(() => createTransport(env.config({ ignoreTLS: true })), err => {
        assertCode(err, 'ECONFIG');
        return /^mail\.smtp\.ignoreTLS cannot be true with credentials/.test(err.message);
    });
    assert.throws(() => createTransport(env.config({ opportunisticTLS: true })), /mail\.smtp\.opportunisticTLS is not supported/);
});

test('service names a well-known host; authMethod must fit the config', T, () => {
    const office = createTransport({ service: 'Office365', auth: { user: 'a@contoso.com', pass: 'p' } });
    env.track(office);
    assert.throws(() => createTransport({ service: 'Nowhere Mail' }), /mail\.smtp\.service "Nowhere Mail" is not a service/);
    assert.throws(() => createTransport(env.config({ authMethod: 'LOGIN' })), /mail\.smtp\.authMethod "LOGIN" does not fit/);
    env.track(createTransport(env.config({ authMethod: 'XOAUTH2' })));
});

test("nodemailer's own OAuth2 auth shape (clientId, clientSecret, accessUrl) sends with the client_credentials grant", T, async () => {
    const config = {
        host: '127.0.0.1',
        port: env.smtp.port,
        tls: { ca: makeTestPki().caPem, servername: 'localhost' },
        auth: { type: 'OAuth2', user: TEST_USER, clientId: TEST_CLIENT_ID, clientSecret: TEST_CLIENT_SECRET, accessUrl: env.token.url, scope: TEST_SCOPE },
    };
    const transport = env.track(createTransport(config));
    assert.equal(transport.toJSON().type, 'oauth2');
    const before = env.smtp.messages.length;
    await transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 'nodemailer shape', text: 'x' });
    assert.equal(env.smtp.messages.length, before + 1);
    assert.equal(env.smtp.authAttempts.at(-1).method, 'XOAUTH2');
    assert.throws(
        () => createTransport({ ...config, auth: { ...config.auth, accessToken: 'a', expires: 1 } }),
        /^Error: mail\.smtp\.auth\.accessToken is not supported yet/
    );
});

test('tls.cert + tls.key: the client certificate is presented to a server that asks for one; a key without its certificate is ECONFIG', T, async () => {
    const client = makeClientCertificate({ commonName: 'relay client' });
    const presented = [];
    const server = await relay({
        requestClientCert: true,
        onSecureSocket: socket => presented.push(socket.getPeerCertificate().raw),
    });
    const transport = env.track(createTransport(relayConfig(server, { tls: { ca: makeTestPki().caPem, servername: 'localhost', cert: client.certPem, key: client.keyPkcs8Pem } })));
    await transport.sendMail(message);
    assert.equal(presented.length, 1);
    assert.deepEqual(presented[0], client.der);

    const anonymous = env.track(createTransport(relayConfig(server)));
    await anonymous.sendMail(message);
    assert.equal(presented.length, 2);
    assert.equal(presented[1], undefined, 'no certificate without tls.cert');

    assert.throws(() => createTransport(relayConfig(server, { tls: { key: client.keyPkcs8Pem } })), /mail\.smtp\.tls\.cert is missing: tls\.key needs its certificate/);
    const other = makeClientCertificate();
    assert.throws(
        () => createTransport(relayConfig(server, { tls: { cert: client.certPem, key: other.keyPkcs8Pem } })),
        err => err.code === 'ECONFIG' && /tls\.key does not fit/.test(err.message) && !err.message.includes('PRIVATE KEY')
    );
});

test("nodemailer's OAuth2 auth with refreshToken uses the refresh_token grant; a refused refresh token is EOAUTH2 without the token in it", T, async () => {
    const refreshToken = 'canary-refresh-token-0.AXkA~Zt3';
    env.token.setHandler((req, form, res, next) => {
        if (form.grant_type !== 'refresh_token') {
            return next();
        }
        if (form.refresh_token === refreshToken && form.client_id === TEST_CLIENT_ID && form.client_secret === TEST_CLIENT_SECRET) {
            return env.token.respondWithToken(res);
        }
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid_grant', error_description: `AADSTS9002313: Invalid request. The refresh token ${form.refresh_token} is malformed.`, error_codes: [9002313] }));
    });
    try {
        const config = {
            host: '127.0.0.1',
            port: env.smtp.port,
            tls: { ca: makeTestPki().caPem, servername: 'localhost' },
            auth: { type: 'OAuth2', user: TEST_USER, clientId: TEST_CLIENT_ID, clientSecret: TEST_CLIENT_SECRET, refreshToken, accessUrl: env.token.url, scope: TEST_SCOPE },
        };
        const transport = env.track(createTransport(config));
        await transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 'refresh grant', text: 'x' });
        const request = env.token.requests.at(-1);
        assert.equal(request.form.grant_type, 'refresh_token');
        assert.equal(request.form.refresh_token, refreshToken);

        const wrong = env.track(createTransport({ ...config, auth: { ...config.auth, refreshToken: `${refreshToken}-revoked` } }));
        const err = await rejection(wrong.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 'x', text: 'x' }));
        assertCode(err, 'EOAUTH2');
        assert.equal(err.oauthError, 'invalid_grant');
        assert.ok(!JSON.stringify({ message: err.message, response: err.response }).includes('canary-refresh-token'), err.message);
    } finally {
        env.token.setHandler(null);
    }
});
