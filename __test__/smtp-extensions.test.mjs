// SMTP extensions against real servers: smtp-server with 8BITMIME, SMTPUTF8, PIPELINING
// and DSN on or off and a recipient limit (452), and a scripted server where what matters
// is the bytes on the wire (punycode). No AUTH here: a transport without `auth` sends in
// plaintext to a server that offers no STARTTLS.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { loadTransport } from './support/config.mjs';
import { rejection } from './support/errors.mjs';
import { closerOf, listenOnLoopback, trackSockets } from './support/listen.mjs';
import { startScriptedSmtp } from './support/scripted-smtp.mjs';

const require = createRequire(import.meta.url);
const nodemailer = require('nodemailer');
const { createTransport } = loadTransport();
const T = { timeout: 60000 };
const FROM = 'sender@example.com';

/** smtp-server without TLS or AUTH; records each transaction's envelope and content. */
async function startServer(t, options = {}) {
    const transactions = [];
    const server = new SMTPServer({
        authOptional: true,
        hideSTARTTLS: true,
        disabledCommands: ['STARTTLS', 'AUTH'],
        logger: false,
        disableReverseLookup: true,
        ...options,
        onData(stream, session, callback) {
            const chunks = [];
            stream.on('data', chunk => chunks.push(chunk));
            stream.on('end', () => {
                transactions.push({ envelope: structuredClone(session.envelope), raw: Buffer.concat(chunks) });
                callback(null, 'queued');
            });
        }
    });
    const sockets = trackSockets(server.server);
    const port = await listenOnLoopback(server.server);
    t.after(closerOf(server.server, sockets));
    const transport = config => {
        const made = createTransport({ host: '127.0.0.1', port, connectionTimeout: 5000, socketTimeout: 20000, maxRetries: 0, ...config });
        t.after(() => made.close());
        return made;
    };
    return { transactions, transport };
}

const many = n => Array.from({ length: n }, (_, i) => `rcpt${i}@example.com`);

test('2,000 recipients, pipelined: one transaction with maxRecipientsPerMessage 2000, four with the default 500', T, async t => {
    const { transactions, transport } = await startServer(t);
    const to = many(2000);
    const info = await transport({ maxRecipientsPerMessage: 2000 }).sendMail({ from: FROM, to, subject: 'many', text: 'x' });
    assert.equal(info.accepted.length, 2000);
    assert.equal(transactions.length, 1);
    assert.equal(transactions[0].envelope.rcptTo.length, 2000);

    const split = await transport({}).sendMail({ from: FROM, to, subject: 'many, split', text: 'x' });
    assert.deepEqual(split.accepted, to);
    assert.deepEqual(
        transactions.slice(1).map(tx => tx.envelope.rcptTo.length),
        [500, 500, 500, 500]
    );
});

test('452 too many recipients: the rest go in following transactions; info.accepted covers them all', T, async t => {
    for (const hidePIPELINING of [false, true]) {
        const { transactions, transport } = await startServer(t, { maxRecipients: 3, hidePIPELINING });
        const to = many(8);
        const info = await transport({}).sendMail({ from: FROM, to, subject: '452', text: 'x' });
        assert.deepEqual(info.accepted, to, `hidePIPELINING ${hidePIPELINING}`);
        assert.deepEqual(info.rejected, []);
        assert.deepEqual(transactions.map(tx => tx.envelope.rcptTo.length), [3, 3, 2]);
    }
});

test('without 8BITMIME nothing 8-bit is sent: built messages are 7-bit, an 8-bit raw message is EMESSAGE', T, async t => {
    const { transactions, transport } = await startServer(t, { hide8BITMIME: true });
    const sender = transport({});
    await sender.sendMail({ from: FROM, to: 'a@example.com', subject: 'Grüße – ½', text: 'Žluťoučký kůň úpěl ďábelské ódy', html: '<p>Ünïcödé</p>' });
    const raw = transactions[0].raw;
    assert.ok(raw.every(byte => byte < 0x80), 'the message is 7-bit');
    assert.match(raw.toString(), /Content-Transfer-Encoding: (quoted-printable|base64)/);

    const mailer = nodemailer.createTransport(sender);
    const eightBit = Buffer.from(`From: ${FROM}\r\nTo: a@example.com\r\nSubject: raw\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n`);
    const err = await rejection(mailer.sendMail({ raw: eightBit, envelope: { from: FROM, to: ['a@example.com'] } }));
    assert.equal(err.code, 'EMESSAGE');
    assert.match(err.message, /8BITMIME/);
    assert.equal(transactions.length, 1, 'nothing more was sent');
});

test('with 8BITMIME an 8-bit raw message goes with BODY=8BITMIME', T, async t => {
    const { transactions, transport } = await startServer(t);
    const mailer = nodemailer.createTransport(transport({}));
    const eightBit = Buffer.from(`From: ${FROM}\r\nTo: a@example.com\r\nSubject: raw\r\n\r\nGrüße\r\n`);
    await mailer.sendMail({ raw: eightBit, envelope: { from: FROM, to: ['a@example.com'] } });
    assert.equal(transactions[0].envelope.bodyType, '8bitmime');
    assert.ok(transactions[0].raw.includes(Buffer.from('Grüße')));
});

test('SMTPUTF8: without it IDN domains go as punycode and a UTF-8 local part is EENVELOPE; with it, UTF-8 and the SMTPUTF8 parameter', T, async t => {
    const ehlo = smtputf8 => () => ['250-localhost', '250-8BITMIME', '250-PIPELINING', smtputf8 ? '250 SMTPUTF8' : '250 HELP'].join('\r\n');
    const without = await startScriptedSmtp({ starttls: false, on: { EHLO: ehlo(false) } });
    t.after(() => without.close());
    const plain = createTransport({ host: '127.0.0.1', port: without.port, maxRetries: 0 });
    t.after(() => plain.close());
    await plain.sendMail({ from: FROM, to: 'user@bücher.example', subject: 'idn', text: 'x' });
    const lines = without.commands().map(c => c.line);
    assert.ok(lines.includes('RCPT TO:<user@xn--bcher-kva.example>'), lines.join('\n'));
    assert.ok(!lines.some(l => l.includes('SMTPUTF8')));
    const err = await rejection(plain.sendMail({ from: FROM, to: 'jürgen@example.com', subject: 'utf8 local part', text: 'x' }));
    assert.equal(err.code, 'EENVELOPE');
    assert.match(err.message, /jürgen@example\.com/);
    assert.equal(without.commands().filter(c => c.line.startsWith('MAIL')).length, 1, 'no MAIL FROM for the refused one');

    const withIt = await startScriptedSmtp({ starttls: false, on: { EHLO: ehlo(true) } });
    t.after(() => withIt.close());
    const utf8 = createTransport({ host: '127.0.0.1', port: withIt.port, maxRetries: 0 });
    t.after(() => utf8.close());
    await utf8.sendMail({ from: FROM, to: 'jürgen@bücher.example', subject: 'utf8', text: 'x' });
    const sent = withIt.commands().map(c => c.line);
    // The To header holds the UTF-8 address too, so the content is 8-bit (RFC 6532).
    assert.ok(sent.includes(`MAIL FROM:<${FROM}> BODY=8BITMIME SMTPUTF8`), sent.join('\n'));
    assert.ok(sent.includes('RCPT TO:<jürgen@bücher.example>'), sent.join('\n'));
});

test('DSN: the dsn option becomes RET, ENVID, NOTIFY, ORCPT; to a server without DSN it is EMESSAGE', T, async t => {
    const { transactions, transport } = await startServer(t, { hideDSN: false });
    const dsn = { id: 'envelope-42', return: 'headers', notify: ['success', 'failure'], recipient: FROM };
    await transport({}).sendMail({ from: FROM, to: 'a@example.com', subject: 'dsn', text: 'x', dsn });
    const { envelope } = transactions[0];
    assert.equal(envelope.dsn.ret, 'HDRS');
    assert.equal(envelope.dsn.envid, 'envelope-42');
    assert.deepEqual(envelope.rcptTo[0].dsn, { notify: ['SUCCESS', 'FAILURE'], orcpt: `rfc822;${FROM}` });

    const plain = await startServer(t);
    const err = await rejection(plain.transport({}).sendMail({ from: FROM, to: 'a@example.com', subject: 'dsn', text: 'x', dsn }));
    assert.equal(err.code, 'EMESSAGE');
    assert.match(err.message, /DSN/);
    assert.equal(plain.transactions.length, 0);

    const badNotify = await rejection(transport({}).sendMail({ from: FROM, to: 'a@example.com', text: 'x', dsn: { notify: 'never,success' } }));
    assert.equal(badNotify.code, 'EMESSAGE');
    assert.match(badNotify.message, /^message\.dsn\.notify /);
});
