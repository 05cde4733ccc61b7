// How the SMTP server is reached: Happy Eyeballs over a dual-stack name whose first (IPv6)
// address is black-holed, `localAddress`, `dnsTimeout`. The racing itself is tested in Rust
// (crates/core/src/smtp/dial.rs) with a resolver hook; here the public API, with a real name.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadTransport, TEST_USER } from './support/config.mjs';
import { setupTransport } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 30000 };
const CHILD = fileURLToPath(new URL('./support/happy-eyeballs-child.mjs', import.meta.url));
const mail = subject => ({ from: TEST_USER, to: 'rcpt@example.com', subject, text: subject });

// A private network namespace (loopback only) and mount namespace (its own /etc/hosts): the
// name smtp.example.test gets two addresses without touching the machine's /etc/hosts. Without
// root, a user namespace (-r) where unprivileged ones are allowed.
const UNSHARE = [...(process.getuid() === 0 ? [] : ['-r']), '-n', '-m', '--'];
const namespaces = spawnSync('unshare', [...UNSHARE, 'sh', '-c', 'ip link set lo up'], { stdio: 'ignore' });
const NO_NAMESPACES = namespaces.status === 0 ? false : 'needs unshare and ip, and root or unprivileged user namespaces';

/** Runs support/happy-eyeballs-child.mjs in the namespaces; resolves with the JSON it prints. */
async function runNamespacedChild(t) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp-network-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const hosts = path.join(dir, 'hosts');
    fs.writeFileSync(hosts, '::1 smtp.example.test\n127.0.0.1 smtp.example.test localhost\n');
    // glibc would wait 30 s per try for the silent name server.
    const resolvConf = path.join(dir, 'resolv.conf');
    fs.writeFileSync(resolvConf, 'nameserver 127.0.0.1\noptions timeout:30 attempts:1\n');
    const script = 'ip link set lo up && mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && exec "$3" "$4"';
    const child = spawn('unshare', [...UNSHARE, 'sh', '-c', script, 'sh', hosts, resolvConf, process.execPath, CHILD], {
        stdio: ['ignore', 'pipe', 'pipe']
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', chunk => (stdout += chunk));
    child.stderr.on('data', chunk => (stderr += chunk));
    const guard = setTimeout(() => child.kill('SIGKILL'), 25000);
    const [code] = await new Promise(resolve => child.on('close', (...args) => resolve(args)));
    clearTimeout(guard);
    assert.equal(code, 0, `the namespaced child failed:\n${stderr}`);
    return JSON.parse(stdout.trim().split('\n').at(-1));
}

let namespaced;

test('Happy Eyeballs: smtp.example.test = [::1] (black-holed) + 127.0.0.1 -> sent over IPv4 well within connectionTimeout', { ...T, skip: NO_NAMESPACES }, async t => {
    namespaced = await runNamespacedChild(t);
    const result = namespaced;
    t.diagnostic(`send to 127.0.0.1: ${result.direct.ms} ms; to smtp.example.test with [::1] black-holed: ${result.dualStack.ms} ms`);

    assert.equal(result.probe, 'hangs', 'the premise: a connect to [::1]:PORT hangs');
    assert.ok(result.direct.ok, `the direct send failed: ${result.direct.message}`);
    assert.ok(result.dualStack.ok, `the dual-stack send failed: ${result.dualStack.code} ${result.dualStack.message}`);
    assert.equal(result.remoteAddress, '127.0.0.1');
    assert.match(result.dualStack.log, new RegExp(`connected to smtp\\.example\\.test:${result.port} at 127\\.0\\.0\\.1:${result.port} \\(IPv4\\)`));
    // The black-holed address costs one attempt delay (250 ms), not the 10 s connectionTimeout:
    // asserted generously, the figure is in the diagnostic above.
    assert.ok(result.dualStack.ms < 5000, `the send took ${result.dualStack.ms} ms`);
});

test('dnsTimeout: a name server that never answers -> ETIMEDOUT after dnsTimeout, not connectionTimeout', { ...T, skip: NO_NAMESPACES }, async t => {
    // The same namespaced run as the test above (one child for both).
    const { slowDns } = namespaced ?? (await runNamespacedChild(t));
    assert.equal(slowDns.ok, false, 'the name cannot resolve');
    assert.equal(slowDns.code, 'ETIMEDOUT');
    assert.equal(slowDns.message, 'resolving unlisted.example.test timed out after 500 ms (dnsTimeout)');
    assert.ok(slowDns.ms < 5000, `the send took ${slowDns.ms} ms (connectionTimeout is 10000)`);
});

test('localAddress: the socket is bound to it (the server sees 127.0.0.2)', T, async t => {
    const { env, transport } = await setupTransport(t, createTransport, { config: { localAddress: '127.0.0.2' } });
    await transport.sendMail(mail('from 127.0.0.2'));
    assert.equal(env.smtp.connections.at(-1).remoteAddress, '127.0.0.2');
});

test('localAddress of the other family than every server address -> ECONNECTION naming it, no connection', T, async t => {
    const { env, transport } = await setupTransport(t, createTransport, { config: { localAddress: '::1', maxRetries: 0 } });
    const err = await rejection(transport.sendMail(mail('no IPv6')));
    assertCode(err, 'ECONNECTION');
    assert.equal(err.message, '127.0.0.1 has no IPv6 address, and localAddress ::1 can reach no other');
    assert.equal(env.smtp.connections.length, 0);
});

test('localAddress, dnsTimeout: malformed values -> ECONFIG naming the field', T, () => {
    for (const [field, value, expected] of [
        ['localAddress', 'eth0', /^mail\.smtp\.localAddress must be an IP address of this machine/],
        ['localAddress', 42, /^mail\.smtp\.localAddress must be a string/],
        ['dnsTimeout', 0, /^mail\.smtp\.dnsTimeout must be/],
        ['dnsTimeout', '5s', /^mail\.smtp\.dnsTimeout must be/]
    ]) {
        let thrown;
        try {
            createTransport({ host: 'localhost', port: 587, [field]: value });
        } catch (err) {
            thrown = err;
        }
        assertCode(thrown, 'ECONFIG');
        assert.match(thrown.message, expected);
    }
});
