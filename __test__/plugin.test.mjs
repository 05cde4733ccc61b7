// nodemailer's transport-plugin API: `nodemailer.createTransport(createTransport(smtp))`.
// nodemailer builds the message (multipart, attachments, icalEvent, DKIM, ...) and this
// transport sends those bytes as they are, with nodemailer's envelope. What arrives must
// be exactly what nodemailer itself produces for the same message.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { loadTransport, TEST_USER } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';

const require = createRequire(import.meta.url);
const nodemailer = require('nodemailer');
const { createTransport } = loadTransport();
const T = { timeout: 30000 };

const ICS = [
    'BEGIN:VCALENDAR',
    'VERSION:2.0',
    'PRODID:-//smtp-oauth-transport//tests//EN',
    'METHOD:REQUEST',
    'BEGIN:VEVENT',
    'UID:plugin-test-1@example.com',
    'DTSTAMP:20260101T090000Z',
    'DTSTART:20270115T100000Z',
    'DTEND:20270115T110000Z',
    'SUMMARY:Plánování – quarterly review',
    'ORGANIZER;CN=Sender:mailto:sender@example.com',
    'ATTENDEE;CN=Recipient;RSVP=TRUE:mailto:rcpt@example.com',
    'END:VEVENT',
    'END:VCALENDAR',
    ''
].join('\r\n');

function dkimKey() {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    return privateKey.export({ type: 'pkcs8', format: 'pem' });
}

/**
 * The same message for every build. messageId, date and baseBoundary are fixed so that
 * two builds (through this transport, and through nodemailer's streamTransport) can be
 * compared byte for byte; everything else is nodemailer's own output.
 */
function richMessage({ binary, privateKey, fixed = true }) {
    return {
        from: `Sender <${TEST_USER}>`,
        to: 'Recipient <rcpt@example.com>',
        cc: 'copy@example.com',
        subject: 'Plugin – zpráva s přílohami',
        text: 'Plain body, ünïcödé\nsecond line\n.a line starting with a dot\n',
        html: '<p>HTML body, <b>ünïcödé</b></p>\n<p>.dot line</p>',
        attachments: [
            { filename: 'random.bin', content: binary },
            { filename: 'notes.txt', content: 'string attachment ✓\nline 2\n' }
        ],
        icalEvent: { method: 'REQUEST', filename: 'invite.ics', content: ICS },
        dkim: { domainName: 'example.com', keySelector: 'test', privateKey },
        ...(fixed
            ? {
                  messageId: '<plugin-fixed-1@example.com>',
                  date: new Date('2026-03-04T05:06:07Z'),
                  baseBoundary: 'plugin-test-boundary'
              }
            : {})
    };
}

/** nodemailer's own build of `message`, with CRLF line breaks as its SMTP transport sends them. */
async function nodemailerBuild(message) {
    const stream = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' });
    return stream.sendMail(message);
}

/** The parts a reader sees, decoded: text, html, and each attachment's bytes. */
async function parts(raw) {
    const { simpleParser } = require('mailparser');
    const parsed = await simpleParser(raw, { keepCidLinks: true });
    return {
        text: parsed.text,
        html: parsed.html,
        attachments: parsed.attachments.map(a => ({
            filename: a.filename,
            contentType: a.contentType,
            method: a.method,
            content: a.content
        })),
        dkim: parsed.headers.get('dkim-signature')
    };
}

let env;
test.before(async () => {
    env = await startEnv();
});
test.after(async () => {
    await env.close();
});

test('the plugin object has name, version, send, verify, close, isIdle', T, () => {
    const transport = createTransport(env.config());
    env.track(transport);
    assert.equal(transport.name, 'smtp-oauth-transport');
    assert.equal(transport.version, require('../package.json').version);
    for (const method of ['send', 'verify', 'close', 'isIdle']) {
        assert.equal(typeof transport[method], 'function', `${method}()`);
    }
    const mailer = nodemailer.createTransport(transport);
    assert.equal(mailer.transporter, transport);
    assert.match(mailer.getVersionString(), /smtp-oauth-transport\/\d+\.\d+\.\d+/);
});

test('a nodemailer-built message (text, html, 2 attachments, icalEvent, DKIM) arrives byte-identical to nodemailer\'s own build', T, async () => {
    const binary = crypto.randomBytes(5000);
    const privateKey = dkimKey();
    const transport = env.track(createTransport(env.config()));
    const mailer = nodemailer.createTransport(transport);
    const before = env.smtp.messages.length;

    const info = await mailer.sendMail(richMessage({ binary, privateKey }));
    const reference = await nodemailerBuild(richMessage({ binary, privateKey }));

    assert.equal(env.smtp.messages.length, before + 1);
    const received = env.smtp.messages.at(-1);

    // info: nodemailer's messageId and envelope, plus this transport's SMTP results.
    assert.equal(info.messageId, '<plugin-fixed-1@example.com>');
    assert.equal(info.messageId, reference.messageId);
    assert.deepEqual(info.envelope, reference.envelope);
    assert.deepEqual(info.envelope, { from: TEST_USER, to: ['rcpt@example.com', 'copy@example.com'] });
    assert.deepEqual([...info.accepted].sort(), ['copy@example.com', 'rcpt@example.com']);
    assert.deepEqual(info.rejected, []);
    assert.match(info.response, /^250 /);
    // The SMTP envelope is nodemailer's.
    assert.deepEqual(received.envelope, { from: TEST_USER, to: ['rcpt@example.com', 'copy@example.com'] });
    assert.equal(received.parsed.messageId, info.messageId);

    // Part by part (clear failure messages first) ...
    const got = await parts(received.raw);
    const want = await parts(reference.message);
    assert.ok(got.dkim, 'the DKIM-Signature header is present');
    assert.match(received.raw.toString('latin1'), /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.com;\r\n q=dns\/txt; s=test;/);
    assert.equal(got.text, want.text);
    assert.equal(got.html, want.html);
    // Two attachments, and the calendar (nodemailer adds it as an alternative and as invite.ics).
    assert.equal(got.attachments.length, want.attachments.length);
    assert.ok(got.attachments.length >= 3);
    assert.deepEqual(
        got.attachments.map(a => [a.filename, a.contentType]),
        want.attachments.map(a => [a.filename, a.contentType])
    );
    for (let i = 0; i < got.attachments.length; i++) {
        assert.ok(
            Buffer.compare(got.attachments[i].content, want.attachments[i].content) === 0,
            `attachment ${got.attachments[i].filename} differs`
        );
    }
    const byName = name => got.attachments.find(a => a.filename === name);
    assert.ok(Buffer.compare(byName('random.bin').content, binary) === 0, 'the Buffer attachment is intact');
    assert.equal(byName('notes.txt').content.toString('utf8'), 'string attachment ✓\nline 2\n');
    const calendars = got.attachments.filter(a => a.contentType === 'text/calendar');
    assert.ok(calendars.length >= 1, 'the icalEvent part arrived');
    for (const calendar of calendars) {
        assert.equal(calendar.content.toString('utf8'), ICS);
    }

    // ... and the whole message, DKIM signature included.
    assert.ok(
        Buffer.compare(received.raw, reference.message) === 0,
        `the received message (${received.raw.length} bytes) differs from nodemailer's build (${reference.message.length} bytes)`
    );
});

test('without fixed ids: a second build of the same data has the same decoded parts; DKIM signs it', T, async () => {
    const binary = crypto.randomBytes(20000);
    const privateKey = dkimKey();
    const transport = env.track(createTransport(env.config()));
    const mailer = nodemailer.createTransport(transport);
    const info = await mailer.sendMail(richMessage({ binary, privateKey, fixed: false }));
    const reference = await nodemailerBuild(richMessage({ binary, privateKey, fixed: false }));

    const received = env.smtp.messages.find(m => m.parsed.messageId === info.messageId);
    assert.ok(received, 'the message arrived under the messageId nodemailer reported');
    const got = await parts(received.raw);
    const want = await parts(reference.message);
    assert.ok(got.dkim);
    assert.equal(got.text, want.text);
    assert.equal(got.html, want.html);
    assert.equal(got.attachments.length, want.attachments.length);
    got.attachments.forEach((a, i) => assert.ok(Buffer.compare(a.content, want.attachments[i].content) === 0, a.filename));
});

test('verify, isIdle and close work through nodemailer; idle events reach the mailer', T, async () => {
    const transport = createTransport(env.config({ pool: true, maxConnections: 2 }));
    const mailer = nodemailer.createTransport(transport);
    let idle = 0;
    mailer.on('idle', () => {
        idle += 1;
    });
    assert.equal(await mailer.verify(), true);
    assert.equal(mailer.isIdle(), true);
    const before = env.smtp.messages.length;
    const infos = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
            mailer.sendMail({ from: TEST_USER, to: `r${i}@example.com`, subject: `through nodemailer ${i}`, text: `n ${i}` })
        )
    );
    assert.equal(env.smtp.messages.length, before + 6);
    assert.deepEqual(
        infos.map(i => i.envelope.to[0]),
        ['r0@example.com', 'r1@example.com', 'r2@example.com', 'r3@example.com', 'r4@example.com', 'r5@example.com']
    );
    assert.ok(idle >= 1, 'the idle event reached nodemailer');
    assert.equal(mailer.isIdle(), true);
    await mailer.close();
    const err = await rejection(mailer.sendMail({ from: TEST_USER, to: 'late@example.com', subject: 'after close', text: 'x' }));
    assertCode(err, 'ECONNECTION');
});

test('callback style: nodemailer.sendMail(data, callback) gets info; errors keep code and fields', T, async t => {
    const refusing = await startEnv({ smtp: { refuseRecipients: ['bad@example.com'] } });
    t.after(() => refusing.close());
    const mailer = nodemailer.createTransport(refusing.track(createTransport(refusing.config())));

    const info = await new Promise((resolve, reject) =>
        mailer.sendMail({ from: TEST_USER, to: ['ok@example.com', 'bad@example.com'], subject: 'partial', text: 'x' }, (err, result) =>
            err ? reject(err) : resolve(result)
        )
    );
    assert.deepEqual(info.accepted, ['ok@example.com']);
    assert.deepEqual(info.rejected, ['bad@example.com']);
    assert.equal(info.rejectedErrors[0].code, 'EENVELOPE');
    assert.equal(info.rejectedErrors[0].responseCode, 550);

    const err = await rejection(mailer.sendMail({ from: TEST_USER, to: 'bad@example.com', subject: 'all refused', text: 'x' }));
    assertCode(err, 'EENVELOPE');
    assert.equal(err.responseCode, 550);
    assert.equal(err.command, 'RCPT TO');
    assert.equal(err.permanent, true);
    assert.deepEqual(err.rejected, ['bad@example.com']);
});

test('a nodemailer envelope that differs from the headers (Bcc, envelope option) is used as is', T, async () => {
    const transport = env.track(createTransport(env.config()));
    const mailer = nodemailer.createTransport(transport);
    const info = await mailer.sendMail({
        from: TEST_USER,
        to: 'visible@example.com',
        bcc: 'hidden@example.com',
        subject: 'bcc through nodemailer',
        text: 'x'
    });
    const received = env.smtp.messages.find(m => m.parsed.messageId === info.messageId);
    assert.deepEqual(received.envelope.to, ['visible@example.com', 'hidden@example.com']);
    assert.doesNotMatch(received.raw.toString('latin1'), /hidden@example\.com/, 'Bcc is not in the headers');
    assert.deepEqual(info.envelope, { from: TEST_USER, to: ['visible@example.com', 'hidden@example.com'] });

    const info2 = await mailer.sendMail({
        from: TEST_USER,
        to: 'header@example.com',
        envelope: { from: 'bounces@example.com', to: ['real@example.com'] },
        subject: 'envelope option',
        text: 'x'
    });
    const received2 = env.smtp.messages.find(m => m.parsed.messageId === info2.messageId);
    assert.deepEqual(received2.envelope, { from: 'bounces@example.com', to: ['real@example.com'] });
});
