// Against Postfix, what many on-premises relays run: Debian's `postfix` (CI installs it;
// see .ci/run), started here as a throwaway loopback server with its own main.cf/master.cf
// in a temp dir, delivering to the discard transport. Three listeners: everything on
// (PIPELINING, 8BITMIME, SMTPUTF8, DSN, CHUNKING), those extensions off, and a recipient
// limit of 3 (452 4.5.3 beyond it). No AUTH: a transport without `auth` sends in plaintext
// to a relay that offers no STARTTLS, as an internal relay on a trusted network would.
// Needs root (Postfix's master) and the package; both hold in CI.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createRequire } from 'node:module';
import { loadTransport } from './support/config.mjs';
import { rejection } from './support/errors.mjs';
import { waitFor } from './support/wait.mjs';

const require = createRequire(import.meta.url);
const nodemailer = require('nodemailer');
const { createTransport } = loadTransport();
const T = { timeout: 60000 };
const FROM = 'sender@example.com';

let postfix;

async function freePort() {
    const server = net.createServer();
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address();
    await new Promise(resolve => server.close(resolve));
    return port;
}

async function startPostfix() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postfix-test-'));
    fs.chmodSync(dir, 0o755); // the mail owner must reach data/
    fs.mkdirSync(path.join(dir, 'queue'));
    fs.mkdirSync(path.join(dir, 'data'));
    // The master writes its lock file there as the mail owner.
    spawnSync('chown', ['postfix', path.join(dir, 'data')]);
    const ports = { full: await freePort(), bare: await freePort(), limited: await freePort() };
    fs.writeFileSync(
        path.join(dir, 'main.cf'),
        [
            'compatibility_level = 3.6',
            `queue_directory = ${dir}/queue`,
            `data_directory = ${dir}/data`,
            'mail_owner = postfix',
            'setgid_group = postdrop',
            'inet_interfaces = 127.0.0.1',
            'inet_protocols = ipv4',
            'myhostname = postfix.localhost',
            'mydestination =',
            'mynetworks = 127.0.0.0/8',
            'smtpd_relay_restrictions = permit_mynetworks, reject',
            'default_transport = discard:',
            'relay_transport = discard:',
            'local_transport = discard:',
            'alias_maps =',
            'alias_database =',
            'maillog_file = /dev/stdout',
            'smtputf8_enable = yes',
            ''
        ].join('\n')
    );
    const service = (name, type, priv, unpriv, chroot, wakeup, max, command) =>
        [name, type, priv, unpriv, chroot, wakeup, max, command].join(' ');
    fs.writeFileSync(
        path.join(dir, 'master.cf'),
        [
            service(`127.0.0.1:${ports.full}`, 'inet', 'n', '-', 'n', '-', '-', 'smtpd'),
            service(`127.0.0.1:${ports.bare}`, 'inet', 'n', '-', 'n', '-', '-', 'smtpd -o smtputf8_enable=no -o smtpd_discard_ehlo_keywords=8bitmime,chunking,dsn'),
            service(`127.0.0.1:${ports.limited}`, 'inet', 'n', '-', 'n', '-', '-', 'smtpd -o smtpd_recipient_limit=3'),
            service('pickup', 'unix', 'n', '-', 'n', '60', '1', 'pickup'),
            service('cleanup', 'unix', 'n', '-', 'n', '-', '0', 'cleanup'),
            service('qmgr', 'unix', 'n', '-', 'n', '300', '1', 'qmgr'),
            service('rewrite', 'unix', '-', '-', 'n', '-', '-', 'trivial-rewrite'),
            service('bounce', 'unix', '-', '-', 'n', '-', '0', 'bounce'),
            service('defer', 'unix', '-', '-', 'n', '-', '0', 'bounce'),
            service('trace', 'unix', '-', '-', 'n', '-', '0', 'bounce'),
            service('verify', 'unix', '-', '-', 'n', '-', '1', 'verify'),
            service('proxymap', 'unix', '-', '-', 'n', '-', '-', 'proxymap'),
            service('showq', 'unix', 'n', '-', 'n', '-', '-', 'showq'),
            service('error', 'unix', '-', '-', 'n', '-', '-', 'error'),
            service('retry', 'unix', '-', '-', 'n', '-', '-', 'error'),
            service('discard', 'unix', '-', '-', 'n', '-', '-', 'discard'),
            service('anvil', 'unix', '-', '-', 'n', '-', '1', 'anvil'),
            service('scache', 'unix', '-', '-', 'n', '-', '1', 'scache'),
            service('postlog', 'unix-dgram', 'n', '-', 'n', '-', '1', 'postlogd'),
            ''
        ].join('\n')
    );
    // Postfix logs to /dev/stdout of its master: a file here (its daemons reopen it, which
    // a pipe would not survive).
    const logPath = path.join(dir, 'maillog');
    const logFd = fs.openSync(logPath, 'a');
    const master = spawn('postfix', ['-c', dir, 'start-fg'], { stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
    const log = () => fs.readFileSync(logPath, 'utf8');
    const exited = new Promise(resolve => master.once('exit', resolve));
    await waitFor(() => log().includes('daemon started') || master.exitCode !== null, { timeoutMs: 15000, label: 'postfix to start' });
    assert.ok(log().includes('daemon started'), `postfix did not start:\n${log()}`);
    return {
        ports,
        log,
        async stop() {
            spawnSync('postfix', ['-c', dir, 'stop']);
            await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 5000))]);
            master.kill('SIGKILL');
            fs.rmSync(dir, { recursive: true, force: true });
        }
    };
}

before(async () => {
    postfix = await startPostfix();
});
after(() => postfix?.stop());

function transportTo(t, port, config = {}) {
    const transport = createTransport({ host: '127.0.0.1', port, connectionTimeout: 5000, socketTimeout: 20000, maxRetries: 0, ...config });
    t.after(() => transport.close());
    return transport;
}

/** Postfix's per-session summary: `disconnect from ... ehlo=1 mail=1 rcpt=2 bdat=3 quit=1 ...`. */
async function sessionSummaries(count) {
    const lines = () => postfix.log().split('\n').filter(l => /disconnect from/.test(l));
    await waitFor(() => lines().length >= count, { label: `${count} Postfix sessions to end` });
    return lines();
}

test('Postfix with CHUNKING: the message goes in BDAT chunks and is queued', T, async t => {
    const before = (await sessionSummaries(0)).length;
    const attachment = Buffer.alloc(3 * 1024 * 1024, 0x2e); // dots: nothing to stuff with BDAT
    const info = await transportTo(t, postfix.ports.full).sendMail({
        from: FROM,
        to: 'a@example.net',
        subject: 'bdat',
        text: '.a line that starts with a dot',
        attachments: [{ filename: 'dots.bin', content: attachment }]
    });
    assert.deepEqual(info.accepted, ['a@example.net']);
    assert.match(info.response, /^250 2\.0\.0 Ok: .*queued as /);
    const summary = (await sessionSummaries(before + 1))[before];
    assert.match(summary, /bdat=\d+/, summary);
    assert.doesNotMatch(summary, /data=/, summary);
});

test('Postfix without 8BITMIME, SMTPUTF8, CHUNKING, DSN: DATA, 7-bit, punycode; UTF-8 local part and dsn refused before sending', T, async t => {
    const before = (await sessionSummaries(0)).length;
    const transport = transportTo(t, postfix.ports.bare);
    const info = await transport.sendMail({ from: FROM, to: 'user@bücher.example', subject: 'Grüße', text: 'Žluťoučký kůň' });
    assert.deepEqual(info.accepted, ['user@bücher.example']);
    const summary = (await sessionSummaries(before + 1))[before];
    assert.match(summary, /data=1/, summary);
    assert.match(postfix.log(), /to=<user@xn--bcher-kva\.example>/);

    const local = await rejection(transport.sendMail({ from: FROM, to: 'jürgen@example.net', text: 'x' }));
    assert.equal(local.code, 'EENVELOPE');
    assert.match(local.message, /jürgen@example\.net/);
    const dsn = await rejection(transport.sendMail({ from: FROM, to: 'a@example.net', text: 'x', dsn: { notify: 'failure' } }));
    assert.equal(dsn.code, 'EMESSAGE');
    const raw = Buffer.from(`From: ${FROM}\r\nTo: a@example.net\r\nSubject: raw\r\n\r\nGrüße\r\n`);
    const eightBit = await rejection(nodemailer.createTransport(transport).sendMail({ raw, envelope: { from: FROM, to: ['a@example.net'] } }));
    assert.equal(eightBit.code, 'EMESSAGE');
});

test('Postfix with SMTPUTF8 and DSN: UTF-8 addresses and DSN parameters are accepted', T, async t => {
    const transport = transportTo(t, postfix.ports.full);
    const info = await transport.sendMail({
        from: FROM,
        to: 'jürgen@bücher.example',
        subject: 'utf8',
        text: 'x',
        dsn: { id: 'env-1', return: 'headers', notify: ['failure', 'delay'], recipient: 'jürgen@bücher.example' }
    });
    assert.deepEqual(info.accepted, ['jürgen@bücher.example']);
    await waitFor(() => /to=<jürgen@bücher\.example>/.test(postfix.log()), { label: 'the UTF-8 recipient in the log' });
});

test('Postfix smtpd_recipient_limit 3: 452 4.5.3, the rest in following transactions', T, async t => {
    for (const [maxRecipientsPerMessage, transactions] of [[500, 3], [2, 4]]) {
        const before = (await sessionSummaries(0)).length;
        const to = Array.from({ length: 8 }, (_, i) => `r${i}@example.net`);
        const info = await transportTo(t, postfix.ports.limited, { maxRecipientsPerMessage }).sendMail({ from: FROM, to, subject: 'limit', text: 'x' });
        assert.deepEqual(info.accepted, to, `maxRecipientsPerMessage ${maxRecipientsPerMessage}`);
        assert.deepEqual(info.rejected, []);
        const summary = (await sessionSummaries(before + 1))[before];
        assert.match(summary, new RegExp(` mail=${transactions} `), summary);
    }
});

test('Postfix: 2,000 recipients in four pipelined transactions', T, async t => {
    const to = Array.from({ length: 2000 }, (_, i) => `r${i}@example.net`);
    const info = await transportTo(t, postfix.ports.full).sendMail({ from: FROM, to: 'list@example.net', envelope: { from: FROM, to }, subject: 'many', text: 'x' });
    assert.equal(info.accepted.length, 2000);
});
