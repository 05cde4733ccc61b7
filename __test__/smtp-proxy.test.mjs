// The `proxy` option: every SMTP connection goes through an HTTP CONNECT proxy (http://,
// https://) or a SOCKS5 proxy (socks5://, socks5h://), both local test servers that record
// what they forwarded. STARTTLS, the certificate check (against the SMTP host, not the proxy)
// and AUTH XOAUTH2 run end to end through the tunnel. The proxy URL's password appears in no
// error, log line or inspection.
import assert from 'node:assert/strict';
import net from 'node:net';
import util from 'node:util';
import { test } from 'node:test';
import { captureLogger, canaryForms, assertNoLeak } from './support/canary.mjs';
import { makeTestPki, makeUntrustedPki } from './support/certs.mjs';
import { loadTransport, TEST_USER } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { assertCode, exposedText, rejection } from './support/errors.mjs';
import { listenOnLoopback, closerOf, trackSockets } from './support/listen.mjs';
import { startProxy } from './support/proxy.mjs';
import { startSocks5 } from './support/socks5.mjs';
import { closedPort } from './support/token-server.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };

const PROXY_USER = 'proxy-user';
const PROXY_PASSWORD = 'CanaryProxyPassword~4 p@ss:w/rd';
const USERINFO = `${PROXY_USER}:${encodeURIComponent(PROXY_PASSWORD)}`;
const FAST = { connectionTimeout: 1500, greetingTimeout: 1500, socketTimeout: 1500, maxRetries: 0 };

const mail = subject => ({ from: TEST_USER, to: 'rcpt@example.com', subject, text: `body of ${subject}` });

/** Every form the proxy password could leak in, besides the usual credentials. */
function secretsOf(env) {
    const basic = Buffer.from(`${PROXY_USER}:${PROXY_PASSWORD}`).toString('base64');
    return canaryForms(env, {
        extra: { 'proxy password': [PROXY_PASSWORD, encodeURIComponent(PROXY_PASSWORD), basic, 'CanaryProxyPassword'] }
    });
}

/**
 * An env, a logger that records the transcript, and a transport to `localhost` (the name the
 * test certificate is for, with no `tls.servername` override) through `proxy`.
 */
async function proxiedTransport(t, proxy, overrides = {}) {
    const env = await startEnv();
    t.after(() => env.close());
    const log = captureLogger();
    const config = env.config({ host: 'localhost', tls: { servername: undefined }, proxy, debug: true, logger: log.logger, ...overrides });
    const transport = env.track(createTransport(config));
    return { env, log, transport };
}

async function started(t, start) {
    const server = await start();
    t.after(() => server.close());
    return server;
}

const text = chunks => Buffer.concat(chunks).toString('latin1');

/**
 * What the proxy saw of the SMTP dialogue: STARTTLS in clear, then only TLS; the AUTH line,
 * the token and the message never in clear.
 */
function assertEncryptedEndToEnd(tunnel, env) {
    const fromClient = text(tunnel.fromClient);
    assert.match(fromClient, /^EHLO .*\r\nSTARTTLS\r\n/s, 'EHLO and STARTTLS went through the tunnel in clear');
    assert.ok(!fromClient.includes('AUTH'), 'AUTH was encrypted inside the tunnel');
    assert.ok(!fromClient.includes('rcpt@example.com'), 'the envelope was encrypted inside the tunnel');
    assert.match(text(tunnel.fromTarget), /^220 /, 'the greeting came back through the tunnel');
    const session = env.smtp.connections.at(-1);
    assert.equal(session.secure, true);
    assert.equal(session.servername, 'localhost', 'SNI (and so the certificate check) names the SMTP host, not the proxy');
    assert.equal(env.smtp.authAttempts.at(-1).accessToken, env.token.issued.at(-1));
}

test('proxy: http:// CONNECT with basic auth -> STARTTLS and XOAUTH2 end to end through the tunnel', T, async t => {
    const proxy = await started(t, () => startProxy({ connect: 'tunnel', auth: `${PROXY_USER}:${PROXY_PASSWORD}` }));
    const { env, log, transport } = await proxiedTransport(t, `http://${USERINFO}@127.0.0.1:${proxy.port}`);
    const info = await transport.sendMail(mail('through http proxy'));
    assert.deepEqual(info.accepted, ['rcpt@example.com']);
    assert.equal(env.smtp.messages.length, 1);
    assert.deepEqual(
        proxy.connects.map(c => c.target),
        [`localhost:${env.smtp.port}`]
    );
    assert.equal(proxy.connects[0].authorization, `Basic ${Buffer.from(`${PROXY_USER}:${PROXY_PASSWORD}`).toString('base64')}`);
    assertEncryptedEndToEnd(proxy.tunnels[0], env);
    await log.settle();
    assert.match(log.text(), new RegExp(`connected to localhost:${env.smtp.port} through the HTTP proxy 127\\.0\\.0\\.1:${proxy.port} at 127\\.0\\.0\\.1:${proxy.port} \\(IPv4\\)`));
    const printed = [log.text(), util.inspect(transport, { showHidden: true, depth: Infinity }), JSON.stringify(transport), exposedText(transport)];
    assertNoLeak(printed.join('\n'), secretsOf(env), 'the log and the printed transport');
});

test('proxy: https:// -> TLS to the proxy verified with tls.ca, CONNECT, then STARTTLS inside', T, async t => {
    const proxy = await started(t, () => startProxy({ connect: 'tunnel', tlsPki: makeTestPki() }));
    const { env, transport } = await proxiedTransport(t, `https://127.0.0.1:${proxy.port}`);
    await transport.sendMail(mail('through https proxy'));
    assert.equal(env.smtp.messages.length, 1);
    assert.deepEqual(
        proxy.connects.map(c => c.target),
        [`localhost:${env.smtp.port}`]
    );
    assertEncryptedEndToEnd(proxy.tunnels[0], env);
});

test('proxy: an https:// proxy with an untrusted certificate -> ETLS naming the proxy; nothing reaches the SMTP server', T, async t => {
    const proxy = await started(t, () => startProxy({ connect: 'tunnel', tlsPki: makeUntrustedPki() }));
    const { env, transport } = await proxiedTransport(t, `https://${USERINFO}@127.0.0.1:${proxy.port}`, FAST);
    const err = await rejection(transport.sendMail(mail('untrusted proxy')));
    assertCode(err, 'ETLS');
    assert.match(err.message, new RegExp(`TLS handshake with the HTTPS proxy 127\\.0\\.0\\.1:${proxy.port} failed`));
    assert.equal(proxy.connects.length, 0, 'no CONNECT (and no credentials) went to an unverified proxy');
    assert.equal(env.smtp.connections.length, 0);
    assertNoLeak(exposedText(err), secretsOf(env), 'the error');
});

test('proxy: socks5h:// with username/password -> the proxy resolves the SMTP host; STARTTLS and XOAUTH2 end to end', T, async t => {
    const socks = await started(t, () => startSocks5({ user: PROXY_USER, password: PROXY_PASSWORD }));
    const { env, log, transport } = await proxiedTransport(t, socks.url('socks5h', USERINFO));
    await transport.sendMail(mail('through socks5h'));
    assert.equal(env.smtp.messages.length, 1);
    assert.equal(socks.requests.length, 1);
    const [request] = socks.requests;
    assert.deepEqual(request.methods, [0, 2]);
    assert.deepEqual(request.auth, { user: PROXY_USER, password: PROXY_PASSWORD, accepted: true });
    assert.equal(request.addressType, 'domain');
    assert.equal(request.target, `localhost:${env.smtp.port}`);
    assertEncryptedEndToEnd(socks.tunnels[0], env);
    await log.settle();
    assert.match(log.text(), /through the SOCKS5 proxy 127\.0\.0\.1:\d+/);
    assertNoLeak(log.text(), secretsOf(env), 'the log');
});

test('proxy: socks5:// without credentials -> the SMTP host is resolved here and the proxy gets an address', T, async t => {
    const socks = await started(t, () => startSocks5());
    const { env, transport } = await proxiedTransport(t, socks.url('socks5'));
    await transport.sendMail(mail('through socks5'));
    assert.equal(env.smtp.messages.length, 1);
    const [request] = socks.requests;
    assert.deepEqual(request.methods, [0]);
    assert.equal(request.auth, null);
    assert.equal(request.addressType, 'ipv4');
    assert.equal(request.target, `127.0.0.1:${env.smtp.port}`);
    assertEncryptedEndToEnd(socks.tunnels[0], env);
});

test('proxy: wrong credentials -> ECONNECTION naming the proxy, never the password (HTTP 407 and SOCKS5)', T, async t => {
    const http = await started(t, () => startProxy({ connect: 'tunnel', auth: `${PROXY_USER}:another-password` }));
    const socks = await started(t, () => startSocks5({ user: PROXY_USER, password: 'another-password' }));
    for (const [url, expected] of [
        [`http://${USERINFO}@127.0.0.1:${http.port}`, /^HTTP proxy 127\.0\.0\.1:\d+: CONNECT localhost:\d+ was answered 407 Proxy Authentication Required: the proxy refused the user name and password of the proxy URL/],
        [socks.url('socks5h', USERINFO), /^SOCKS5 proxy 127\.0\.0\.1:\d+: it refused the user name and password of the proxy URL/]
    ]) {
        const { env, log, transport } = await proxiedTransport(t, url, FAST);
        const err = await rejection(transport.sendMail(mail('bad proxy credentials')));
        assertCode(err, 'ECONNECTION');
        assert.match(err.message, expected);
        assert.equal(err.command, 'CONN');
        assert.equal(env.smtp.connections.length, 0);
        await log.settle();
        assertNoLeak(`${exposedText(err)}\n${log.text()}`, secretsOf(env), 'the error and the log');
    }
    assert.equal(http.connects.length, 1);
    assert.equal(socks.requests[0].auth.accepted, false);
});

test('proxy: a refused tunnel -> ECONNECTION with the HTTP status or the meaning of the SOCKS5 reply', T, async t => {
    const http = await started(t, () => startProxy({ connect: 'refuse' }));
    const socks = await started(t, () => startSocks5());
    let { transport } = await proxiedTransport(t, `http://${USERINFO}@127.0.0.1:${http.port}`, FAST);
    let err = await rejection(transport.sendMail(mail('502')));
    assertCode(err, 'ECONNECTION');
    assert.match(err.message, /CONNECT localhost:\d+ was answered 502 Bad Gateway: the proxy refused the tunnel/);

    // The test SOCKS5 server reaches loopback targets only: any other name is unreachable.
    ({ transport } = await proxiedTransport(t, socks.url('socks5h'), { ...FAST, host: 'smtp.example.test' }));
    err = await rejection(transport.sendMail(mail('unreachable')));
    assertCode(err, 'ECONNECTION');
    assert.match(err.message, /^SOCKS5 proxy 127\.0\.0\.1:\d+: it could not connect to smtp\.example\.test:\d+: host unreachable \(SOCKS5 reply 4\)/);
});

test('proxy: an unreachable proxy -> ECONNECTION naming its host and port, not its password', T, async t => {
    const port = await closedPort();
    const { env, transport } = await proxiedTransport(t, `socks5://${USERINFO}@127.0.0.1:${port}`, FAST);
    const err = await rejection(transport.sendMail(mail('no proxy')));
    assertCode(err, 'ECONNECTION');
    assert.match(err.message, new RegExp(`^cannot connect to the SOCKS5 proxy 127\\.0\\.0\\.1:${port}: `));
    assertNoLeak(exposedText(err), secretsOf(env), 'the error');
});

test('proxy: a proxy that never answers -> ETIMEDOUT after connectionTimeout, naming the proxy', T, async t => {
    const silent = net.createServer(() => {});
    const sockets = trackSockets(silent);
    const port = await listenOnLoopback(silent);
    t.after(closerOf(silent, sockets));
    const { env, transport } = await proxiedTransport(t, `http://${USERINFO}@127.0.0.1:${port}`, { ...FAST, connectionTimeout: 800 });
    const err = await rejection(transport.sendMail(mail('silent proxy')));
    assertCode(err, 'ETIMEDOUT');
    assert.match(err.message, new RegExp(`^connection to localhost:${env.smtp.port} through the HTTP proxy 127\\.0\\.0\\.1:${port} timed out after 800 ms`));
    assertNoLeak(exposedText(err), secretsOf(env), 'the error');
});

test('proxy: an unsupported scheme or a malformed URL -> ECONFIG naming mail.smtp.proxy, without the password', T, async () => {
    for (const [proxy, expected] of [
        [`ftp://${USERINFO}@127.0.0.1:21`, /^mail\.smtp\.proxy uses the unsupported scheme "ftp": use http:\/\/, https:\/\/, socks5:\/\/ or socks5h:\/\//],
        [`${USERINFO}@proxy.example:3128`, /^mail\.smtp\.proxy must be a proxy URL such as http:\/\/proxy:3128/],
        [`http://${USERINFO}@/`, /^mail\.smtp\.proxy must be a proxy URL/]
    ]) {
        let thrown;
        try {
            createTransport({ host: 'localhost', port: 587, proxy });
        } catch (err) {
            thrown = err;
        }
        assertCode(thrown, 'ECONFIG');
        assert.match(thrown.message, expected);
        assertNoLeak(exposedText(thrown), secretsOf(null), 'the config error');
    }
});
