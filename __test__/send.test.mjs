// End-to-end delivery: what the application passes to sendMail() is what arrives,
// as seen by an independent parser (mailparser) on the server side.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadTransport, TEST_USER } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';
import { PNG } from './support/fixtures.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };

let env;
let transport;

before(async () => {
    env = await startEnv();
    transport = env.track(createTransport(env.config()));
});

after(async () => {
    await env.close();
});

const addrs = list => (list ? list.value.map(a => ({ name: a.name, address: a.address })) : list);
const sorted = list => [...list].sort();
// Header section of the raw message, unfolded, for "this header must not exist" checks.
const rawHeaders = raw => raw.toString('utf8').split(/\r?\n\r?\n/)[0].replace(/\r?\n[ \t]+/g, ' ');

/** Sends and returns { info, message } where message is what the server received. */
async function sendAndReceive(t, msg) {
    const before = env.smtp.messages.length;
    const info = await t.sendMail(msg);
    assert.equal(env.smtp.messages.length, before + 1, 'exactly one message reached the server');
    return { info, message: env.smtp.messages.at(-1) };
}

test('delivers to/cc/bcc/replyTo with non-ASCII names, subject, text and html', T, async () => {
    const msg = {
        from: { name: 'Žluťoučký kůň 🐎', address: TEST_USER },
        to: ['Žluťoučký kůň <kun@example.com>', { name: 'Ünïcödé 🐴', address: 'u2@example.com' }],
        cc: 'Cc Person <cc@example.com>, cc2@example.com',
        bcc: 'Hidden Person <hidden@example.com>',
        replyTo: 'Reply Desk <reply@example.com>',
        subject: 'Příliš žluťoučký kůň úpěl ďábelské ódy 🐎 (a long subject that has to be folded over more than one header line)',
        text: 'Dobrý den ✓\nsecond line with ünïcödé\n\n-- \nsignature',
        html: '<p>Dobrý den ✓</p><p>second line with <b>ünïcödé</b> 🐎</p>'
    };
    const { info, message } = await sendAndReceive(transport, msg);
    const { parsed, envelope } = message;

    assert.equal(parsed.subject, msg.subject);
    assert.deepEqual(addrs(parsed.from), [{ name: 'Žluťoučký kůň 🐎', address: TEST_USER }]);
    assert.deepEqual(addrs(parsed.to), [
        { name: 'Žluťoučký kůň', address: 'kun@example.com' },
        { name: 'Ünïcödé 🐴', address: 'u2@example.com' }
    ]);
    assert.deepEqual(addrs(parsed.cc), [
        { name: 'Cc Person', address: 'cc@example.com' },
        { name: '', address: 'cc2@example.com' }
    ]);
    assert.deepEqual(addrs(parsed.replyTo), [{ name: 'Reply Desk', address: 'reply@example.com' }]);
    assert.equal(parsed.text.trimEnd(), msg.text);
    assert.equal(parsed.html.trimEnd(), msg.html);

    // Bcc: in the envelope, never in the delivered headers.
    assert.equal(parsed.bcc, undefined, 'no Bcc header');
    assert.doesNotMatch(rawHeaders(message.raw), /^bcc:/im);
    assert.doesNotMatch(rawHeaders(message.raw), /hidden@example\.com/i);
    const allRcpts = ['kun@example.com', 'u2@example.com', 'cc@example.com', 'cc2@example.com', 'hidden@example.com'];
    assert.equal(envelope.from, TEST_USER);
    assert.deepEqual(sorted(envelope.to), sorted(allRcpts));

    // info mirrors the transaction
    assert.equal(info.envelope.from, TEST_USER);
    assert.deepEqual(sorted(info.envelope.to), sorted(allRcpts));
    assert.deepEqual(sorted(info.accepted), sorted(allRcpts));
    assert.deepEqual(info.rejected, []);
    assert.equal(info.messageId, parsed.messageId, 'info.messageId is the delivered Message-ID');
    assert.match(info.messageId, /^<[^<>@\s]+@[^<>@\s]+>$/);
    assert.equal(typeof info.response, 'string');
    assert.match(info.response, /^250[ -]/);

    // The message went over TLS, by the configured mailbox.
    assert.equal(message.secure, true);
    assert.equal(message.user, TEST_USER);
});

test('attachments: Buffer, base64 string, file path, inline cid image, inline disposition', T, async t => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp-oauth-transport-test-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const csvPath = path.join(dir, 'report.csv');
    const csv = 'id;name\n1;Žluťoučký kůň\n2;ünïcödé\n';
    fs.writeFileSync(csvPath, csv);

    const binary = crypto.randomBytes(70 * 1024); // several base64 lines, every byte value
    const pdfish = Buffer.concat([Buffer.from('%PDF-1.4\n'), crypto.randomBytes(512)]);
    const greeting = 'Ahoj světe ✓';

    const { message } = await sendAndReceive(transport, {
        from: TEST_USER,
        to: 'rcpt@example.com',
        subject: 'attachments',
        text: 'see attachments',
        html: '<p>logo: <img src="cid:logo@test.example" alt="logo"></p>',
        attachments: [
            { filename: 'přehled dat.bin', content: binary, contentType: 'application/octet-stream' },
            { filename: 'greeting.txt', content: Buffer.from(greeting).toString('base64'), encoding: 'base64' },
            { path: csvPath },
            { filename: 'logo.png', content: PNG, contentType: 'image/png', cid: 'logo@test.example' },
            { filename: 'inline.pdf', content: pdfish, contentType: 'application/pdf', contentDisposition: 'inline' }
        ]
    });
    const { parsed } = message;
    // mailparser lists attachments in MIME tree order, not in the order given: look them up.
    const byName = name => {
        const found = parsed.attachments.find(a => a.filename === name);
        assert.ok(found, `attachment ${name} arrived (got ${parsed.attachments.map(a => a.filename).join(', ')})`);
        return found;
    };
    assert.equal(parsed.attachments.length, 5);

    const bin = byName('přehled dat.bin');
    assert.ok(bin.content.equals(binary), 'Buffer attachment bytes are identical');
    assert.equal(bin.contentType, 'application/octet-stream');
    assert.equal(bin.contentDisposition, 'attachment');

    assert.equal(byName('greeting.txt').content.toString('utf8'), greeting, 'base64 string content is decoded once');

    const fromFile = byName('report.csv'); // filename taken from the path
    assert.equal(fromFile.content.toString('utf8'), csv);

    const logo = byName('logo.png');
    assert.ok(logo.content.equals(PNG));
    assert.equal(logo.contentType, 'image/png');
    assert.equal(logo.cid, 'logo@test.example');
    assert.equal(logo.contentId, '<logo@test.example>');
    assert.equal(logo.contentDisposition, 'inline');
    assert.equal(logo.related, true, 'the cid image sits in a multipart/related with the html');
    assert.match(parsed.html, /src="cid:logo@test\.example"/);

    const pdf = byName('inline.pdf');
    assert.ok(pdf.content.equals(pdfish));
    assert.equal(pdf.contentType, 'application/pdf');
    assert.equal(pdf.contentDisposition, 'inline');
    assert.equal(pdf.cid, undefined);
});

test('custom headers, messageId, date, inReplyTo, references, priority, sender', T, async () => {
    const date = new Date('2024-05-06T07:08:09Z');
    const { info, message } = await sendAndReceive(transport, {
        from: TEST_USER,
        sender: 'Shared Mailbox <shared@example.com>',
        to: 'rcpt@example.com',
        subject: 'threading',
        text: 'reply',
        headers: { 'X-Custom': 'v', 'X-Ticket-Id': 'TAS-1234' },
        messageId: '<custom-id-123@example.com>',
        date,
        inReplyTo: '<parent@example.com>',
        references: ['<root@example.com>', '<parent@example.com>'],
        priority: 'high'
    });
    const { parsed } = message;
    assert.equal(parsed.headers.get('x-custom'), 'v');
    assert.equal(parsed.headers.get('x-ticket-id'), 'TAS-1234');
    assert.equal(parsed.messageId, '<custom-id-123@example.com>');
    assert.equal(info.messageId, '<custom-id-123@example.com>');
    assert.equal(parsed.date.getTime(), date.getTime());
    assert.equal(parsed.inReplyTo, '<parent@example.com>');
    assert.deepEqual(parsed.references, ['<root@example.com>', '<parent@example.com>']);
    // simpleParser does not copy priority onto the result: it is only in headers, where
    // mailparser folds X-Priority / X-MSMail-Priority / Importance into 'priority'.
    assert.equal(parsed.headers.get('priority'), 'high');
    assert.deepEqual(addrs(parsed.headers.get('sender')), [{ name: 'Shared Mailbox', address: 'shared@example.com' }]);
});

test('from falls back to the defaults argument of createTransport', T, async () => {
    const t = env.track(createTransport(env.config(), { from: 'Default Sender <default@example.com>' }));
    const { info, message } = await sendAndReceive(t, { to: 'rcpt@example.com', subject: 'defaults', text: 'x' });
    assert.deepEqual(addrs(message.parsed.from), [{ name: 'Default Sender', address: 'default@example.com' }]);
    assert.equal(message.envelope.from, 'default@example.com');
    assert.equal(info.envelope.from, 'default@example.com');
});

test('an explicit from wins over the defaults argument', T, async () => {
    const t = env.track(createTransport(env.config(), { from: 'Default Sender <default@example.com>' }));
    const { message } = await sendAndReceive(t, {
        from: 'Explicit <explicit@example.com>',
        to: 'rcpt@example.com',
        subject: 'explicit',
        text: 'x'
    });
    assert.deepEqual(addrs(message.parsed.from), [{ name: 'Explicit', address: 'explicit@example.com' }]);
    assert.equal(message.envelope.from, 'explicit@example.com');
});

test('without from and without defaults, from is auth.user', T, async () => {
    const { info, message } = await sendAndReceive(transport, { to: 'rcpt@example.com', subject: 'no from', text: 'x' });
    assert.deepEqual(
        message.parsed.from.value.map(a => a.address),
        [TEST_USER]
    );
    assert.equal(message.envelope.from, TEST_USER);
    assert.equal(info.envelope.from, TEST_USER);
});

test('envelope override drives MAIL FROM / RCPT TO, headers stay as given', T, async () => {
    const { info, message } = await sendAndReceive(transport, {
        from: TEST_USER,
        to: 'Header Recipient <header-to@example.com>',
        subject: 'envelope',
        text: 'x',
        envelope: { from: 'bounces@example.com', to: ['envelope-only@example.com', 'second@example.com'] }
    });
    assert.equal(message.envelope.from, 'bounces@example.com');
    assert.deepEqual(sorted(message.envelope.to), ['envelope-only@example.com', 'second@example.com']);
    assert.deepEqual(addrs(message.parsed.to), [{ name: 'Header Recipient', address: 'header-to@example.com' }]);
    assert.deepEqual(addrs(message.parsed.from).map(a => a.address), [TEST_USER]);
    assert.equal(info.envelope.from, 'bounces@example.com');
    assert.deepEqual(sorted(info.envelope.to), ['envelope-only@example.com', 'second@example.com']);
    assert.deepEqual(sorted(info.accepted), ['envelope-only@example.com', 'second@example.com']);
});

test('sendMail with a callback delivers and calls back exactly once', T, async () => {
    const before = env.smtp.messages.length;
    let calls = 0;
    const info = await new Promise((resolve, reject) => {
        transport.sendMail({ from: TEST_USER, to: 'cb@example.com', subject: 'callback', text: 'x' }, (err, result) => {
            calls += 1;
            return err ? reject(err) : resolve(result);
        });
    });
    await new Promise(resolve => setTimeout(resolve, 100)); // a second call would come late
    assert.equal(calls, 1);
    assert.equal(env.smtp.messages.length, before + 1);
    const message = env.smtp.messages.at(-1);
    assert.equal(info.messageId, message.parsed.messageId);
    assert.deepEqual(info.accepted, ['cb@example.com']);
    assert.deepEqual(message.envelope.to, ['cb@example.com']);
});

test('sendMail with a callback passes errors to the callback', T, async () => {
    let calls = 0;
    const err = await new Promise(resolve => {
        transport.sendMail({ from: TEST_USER, to: 'not an address', subject: 'callback error', text: 'x' }, (e, info) => {
            calls += 1;
            resolve(e || new Error(`expected an error, got info ${JSON.stringify(info)}`));
        });
    });
    await new Promise(resolve => setTimeout(resolve, 100));
    assert.equal(calls, 1);
    assertCode(err, ['EMESSAGE', 'EENVELOPE']);
});

test('verify() resolves true after authenticating over TLS, and delivers nothing', T, async () => {
    const t = env.track(createTransport(env.config()));
    const messagesBefore = env.smtp.messages.length;
    const authBefore = env.smtp.authAttempts.length;
    const connectionsBefore = env.smtp.connections.length;

    assert.equal(await t.verify(), true);

    assert.ok(env.smtp.connections.length > connectionsBefore, 'verify() connected');
    const attempts = env.smtp.authAttempts.slice(authBefore);
    assert.ok(attempts.length >= 1, 'verify() performed an AUTH');
    for (const attempt of attempts) {
        assert.equal(attempt.method, 'XOAUTH2');
        assert.equal(attempt.username, TEST_USER);
        assert.equal(attempt.secure, true, 'AUTH only after STARTTLS');
        assert.equal(attempt.accepted, true);
    }
    assert.equal(env.smtp.messages.length, messagesBefore, 'verify() sends no message');
    assert.equal(env.smtp.insecureAuth, false);
});

test('verify() rejects when the SMTP server refuses the token', T, async () => {
    const t = env.track(createTransport(env.config({ auth: { user: 'someone-else@example.com' } })));
    const err = await rejection(t.verify());
    assertCode(err, 'EAUTH');
});
