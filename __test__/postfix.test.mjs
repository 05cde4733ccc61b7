// Against Postfix, what many on-premises relays run: Debian's `postfix` (CI installs it;
// see .ci/run), started as a throwaway loopback server (support/postfix.mjs). Four
// listeners: everything on (PIPELINING, 8BITMIME, SMTPUTF8, DSN, CHUNKING), those extensions
// off, a recipient limit of 3 (452 4.5.3 beyond it), and STARTTLS required (the test CA's
// certificate). No AUTH (Postfix needs a SASL server for it): a transport without `auth`
// sends in plaintext to a relay that offers no STARTTLS, as an internal relay on a trusted
// network would, and uses STARTTLS when it is offered.
// Needs root (Postfix's master) and the package; both hold in CI.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import { makeTestPki } from './support/certs.mjs';
import { loadTransport } from './support/config.mjs';
import { rejection } from './support/errors.mjs';
import { startPostfix } from './support/postfix.mjs';
import { waitFor } from './support/wait.mjs';

const require = createRequire(import.meta.url);
const nodemailer = require('nodemailer');
const { createTransport } = loadTransport();
const T = { timeout: 60000 };
const FROM = 'sender@example.com';

let postfix;
const pki = makeTestPki();

before(async () => {
    postfix = await startPostfix(
        {
            full: '',
            bare: '-o smtputf8_enable=no -o smtpd_discard_ehlo_keywords=8bitmime,chunking,dsn',
            limited: '-o smtpd_recipient_limit=3',
            starttls: '-o smtpd_tls_security_level=encrypt -o smtpd_tls_cert_file={dir}/cert.pem -o smtpd_tls_key_file={dir}/key.pem'
        },
        { files: { 'cert.pem': pki.certPem, 'key.pem': pki.keyPem } }
    );
});
after(() => postfix?.stop());

function transportTo(t, port, config = {}) {
    const transport = createTransport({ host: '127.0.0.1', port, connectionTimeout: 5000, socketTimeout: 20000, maxRetries: 0, ...config });
    t.after(() => transport.close());
    return transport;
}

/**
 * Postfix's per-session summaries (`disconnect from ... ehlo=1 mail=1 rcpt=2 bdat=3 quit=1`),
 * once every session has ended and at least `count` have: unpooled sends resolve before
 * their QUIT, so a session may still be closing when its send has resolved.
 */
async function sessionSummaries(count) {
    const lines = pattern => postfix.log().split('\n').filter(l => pattern.test(l));
    const ended = () => lines(/disconnect from/);
    await waitFor(() => ended().length >= count && ended().length === lines(/\]: connect from/).length, {
        label: `${count} Postfix sessions to end`
    });
    return ended();
}

test('Postfix with CHUNKING and chunking: true: the message goes in BDAT chunks and is queued', T, async t => {
    const before = (await sessionSummaries(0)).length;
    const attachment = Buffer.alloc(3 * 1024 * 1024, 0x2e); // dots: nothing to stuff with BDAT
    const info = await transportTo(t, postfix.ports.full, { chunking: true }).sendMail({
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

    // Without the option: DATA, though the server offers CHUNKING.
    await transportTo(t, postfix.ports.full).sendMail({ from: FROM, to: 'a@example.net', subject: 'data', text: 'x' });
    const plain = (await sessionSummaries(before + 2))[before + 1];
    assert.match(plain, /data=1/, plain);
});

test('Postfix without 8BITMIME, SMTPUTF8, CHUNKING, DSN: DATA, 7-bit, punycode; UTF-8 local part and dsn refused before sending', T, async t => {
    const before = (await sessionSummaries(0)).length;
    const transport = transportTo(t, postfix.ports.bare);
    const info = await transport.sendMail({ from: FROM, to: 'user@bücher.example', subject: 'Grüße', text: 'Žluťoučký kůň' });
    assert.deepEqual(info.accepted, ['user@bücher.example']);
    const summary = (await sessionSummaries(before + 1))[before];
    assert.match(summary, /data=1/, summary);
    // Logged by the queue manager once the message is on its way (to the discard transport).
    await waitFor(() => /to=<user@xn--bcher-kva\.example>/.test(postfix.log()), { label: 'the punycode recipient in the log' });

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

test('Postfix with STARTTLS (the test CA): the transport upgrades and the message goes over TLS', T, async t => {
    const before = (await sessionSummaries(0)).length;
    const transport = transportTo(t, postfix.ports.starttls, { tls: { ca: pki.caPem, servername: 'localhost' } });
    const info = await transport.sendMail({ from: FROM, to: 'a@example.net', subject: 'tls', text: 'x' });
    assert.deepEqual(info.accepted, ['a@example.net']);
    const summary = (await sessionSummaries(before + 1))[before];
    assert.match(summary, /ehlo=2 starttls=1 mail=1 rcpt=1 data=1/, summary);
    const untrusted = transportTo(t, postfix.ports.starttls);
    const err = await rejection(untrusted.sendMail({ from: FROM, to: 'a@example.net', text: 'x' }));
    assert.equal(err.code, 'ETLS', 'the test CA is not trusted without tls.ca');
});
