// nodemailer's normalizeHeaderKey names every header the message is written with: the
// custom `headers`, and the ones the builder writes itself (From, Subject, Content-Type of
// each part, X-Mailer, ...), as nodemailer's own build does; prepared headers keep theirs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import nodemailer from 'nodemailer';
import { loadTransport, TEST_USER } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';

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

// The field names of every header line (root and parts); the bodies here hold no colon.
const headerNames = raw => [...raw.toString('utf8').matchAll(/^([!-9;-~]+):/gm)].map(m => m[1]);

const message = {
    from: TEST_USER,
    to: 'rcpt@example.com',
    cc: 'copy@example.com',
    replyTo: 'reply@example.com',
    subject: 'names',
    text: 'plain body',
    html: '<p>html body</p>',
    priority: 'high',
    xMailer: 'names test',
    inReplyTo: 'parent@example.com',
    references: ['parent@example.com'],
    list: { unsubscribe: 'https://example.com/u', id: 'list.example.com' },
    headers: { 'X-Custom': 'one', 'X-Prepared': { prepared: true, value: 'as is' } },
    attachments: [{ filename: 'a.bin', content: Buffer.from([1, 2, 3]), cid: 'part@x' }],
    normalizeHeaderKey: key => key.toUpperCase(),
};

test('normalizeHeaderKey names every header of the message and its parts, as nodemailer writes them', T, async () => {
    await transport.sendMail(message);
    const ours = headerNames(env.smtp.messages.at(-1).raw);
    const reference = await nodemailer.createTransport({ streamTransport: true, buffer: true }).sendMail(message);
    const theirs = headerNames(reference.message);
    assert.ok(ours.includes('FROM') && ours.includes('CONTENT-TYPE') && ours.includes('X-CUSTOM'), ours.join(' '));
    // Prepared headers (the `list` ones, and a custom one given prepared) keep their names.
    assert.deepEqual(ours.filter(name => name !== name.toUpperCase()).sort(), ['List-ID', 'List-Unsubscribe', 'X-Prepared']);
    assert.deepEqual(new Set(ours), new Set(theirs));
});

test('a normalizeHeaderKey result that would end or forge a header line is EMESSAGE naming the field', T, async () => {
    const err = await rejection(transport.sendMail({ ...message, normalizeHeaderKey: key => (key === 'Subject' ? 'X-A: forged' : key) }));
    assertCode(err, 'EMESSAGE');
    assert.match(err.message, /^message\.normalizeHeaderKey returned "X-A: forged" for Subject, which is not a header name/);
});
