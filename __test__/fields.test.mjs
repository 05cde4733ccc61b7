// nodemailer's message fields, each as nodemailer treats it, as seen by a real SMTP server
// and an independent parser (mailparser).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { loadTransport, TEST_USER } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';
import { closerOf, listenOnLoopback, trackSockets } from './support/listen.mjs';
import { PNG } from './support/fixtures.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };

let env;
let transport;
let web;
const webRequests = [];

before(async () => {
    env = await startEnv();
    transport = env.track(createTransport(env.config()));
    // A loopback web server for `href` attachments.
    const server = http.createServer((req, res) => {
        webRequests.push({ url: req.url, headers: req.headers });
        if (req.url === '/report.pdf') {
            res.writeHead(200, { 'content-type': 'application/pdf' });
            return res.end(Buffer.from('%PDF-1.4 fetched'));
        }
        if (req.url === '/elsewhere') {
            res.writeHead(302, { location: 'http://127.0.0.2:1/secret' });
            return res.end();
        }
        res.writeHead(404);
        res.end();
    });
    const sockets = trackSockets(server);
    web = { port: await listenOnLoopback(server), close: closerOf(server, sockets) };
});

after(async () => {
    await env.close();
    await web.close();
});

const base = { from: TEST_USER, to: 'rcpt@example.com', subject: 'fields' };
const headerBlock = raw => raw.toString('utf8').split(/\r\n\r\n/)[0].replace(/\r\n[ \t]+/g, ' ');
const sha = bytes => crypto.createHash('sha256').update(bytes).digest('hex');

async function send(message) {
    const before = env.smtp.messages.length;
    const info = await transport.sendMail({ ...base, ...message });
    assert.equal(env.smtp.messages.length, before + 1);
    return { info, received: env.smtp.messages.at(-1) };
}

test('a date given as a string is the date JavaScript reads from it (RFC 2822, ISO 8601 with offset)', T, async () => {
    for (const text of ['Tue, 07 Jul 2026 10:11:12 +0200', '2026-07-07T10:11:12.000+02:00', '2026-07-07T08:11:12Z']) {
        const { received } = await send({ date: text, text: 'x' });
        assert.equal(received.parsed.date.getTime(), new Date(text).getTime(), text);
    }
});

test('a header given as an array arrives as one header line per value', T, async () => {
    const { received } = await send({ text: 'x', headers: { 'X-Tag': ['a', 'b'], 'X-One': 'c' } });
    const head = headerBlock(received.raw);
    assert.match(head, /^X-Tag: a$/m);
    assert.match(head, /^X-Tag: b$/m);
    assert.match(head, /^X-One: c$/m);
});

test('a data: URI in path is decoded (never read as a file) and named as nodemailer names it', T, async () => {
    const { received } = await send({
        text: 'x',
        attachments: [{ path: `data:image/png;base64,${PNG.toString('base64')}` }, { path: 'data:text/plain,hello%20world' }],
    });
    const [image, text] = received.parsed.attachments;
    assert.equal(image.contentType, 'image/png');
    assert.equal(image.filename, 'attachment-1.png');
    assert.deepEqual(image.content, PNG);
    assert.equal(text.filename, 'attachment-2.txt');
    assert.equal(text.content.toString(), 'hello world');
});

test('a Readable as attachment content arrives whole; a stream that fails is EMESSAGE naming the field', T, async () => {
    const bytes = crypto.randomBytes(200_000);
    const chunks = [bytes.subarray(0, 70_000), bytes.subarray(70_000)];
    const { received } = await send({ text: 'x', attachments: [{ filename: 'data.bin', content: Readable.from(chunks) }] });
    assert.equal(sha(received.parsed.attachments[0].content), sha(bytes));

    const failing = new Readable({
        read() {
            this.destroy(new Error('disk went away'));
        },
    });
    const before = env.smtp.messages.length;
    const err = await rejection(transport.sendMail({ ...base, attachments: [{ filename: 'x.bin', content: failing }] }));
    assertCode(err, 'EMESSAGE');
    assert.match(err.message, /^message\.attachments\[0\]\.content is a stream that failed: disk went away/);
    assert.equal(env.smtp.messages.length, before);
});

test('close() right after sendMail() with a stream waits for that message', T, async () => {
    const own = createTransport(env.config());
    const slow = new Readable({ read() {} });
    const sending = own.sendMail({ ...base, attachments: [{ filename: 'slow.txt', content: slow }] });
    const closing = own.close();
    setTimeout(() => {
        slow.push('late bytes');
        slow.push(null);
    }, 100);
    const info = await sending;
    await closing;
    const received = env.smtp.messages.find(m => m.parsed.messageId === info.messageId);
    assert.equal(received.parsed.attachments[0].content.toString(), 'late bytes');
});

test('MAIL FROM is the from address, not sender (as nodemailer)', T, async () => {
    const { received, info } = await send({ sender: 'assistant@example.com', text: 'x' });
    assert.equal(received.envelope.from, TEST_USER);
    assert.equal(info.envelope.from, TEST_USER);
    assert.equal(received.parsed.headers.get('sender').value[0].address, 'assistant@example.com');
});

test('attachments without a name are called attachment-N.<extension of their type>', T, async () => {
    const { received } = await send({
        text: 'x',
        attachments: [
            { content: Buffer.from('%PDF'), contentType: 'application/pdf' },
            { content: 'plain' },
            { content: PNG, contentType: 'image/png', filename: 'named.png' },
        ],
    });
    assert.deepEqual(
        received.parsed.attachments.map(a => a.filename),
        ['attachment-1.pdf', 'attachment-2.bin', 'named.png']
    );
});

test('a text attachment keeps its bytes exactly (base64, LF not turned into CRLF)', T, async () => {
    const content = 'line one\nline two\n\nno final newline';
    const { received } = await send({ text: 'x', attachments: [{ filename: 'notes.txt', content }] });
    const attachment = received.parsed.attachments[0];
    assert.equal(attachment.content.toString('utf8'), content);
    assert.match(received.raw.toString(), /Content-Disposition: attachment; filename="notes.txt"\r\nContent-Transfer-Encoding: base64/);
});

test('icalEvent: a text/calendar alternative with its method, and the same event as invite.ics', T, async () => {
    const ics = 'BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nSUMMARY:Réunion\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n';
    const { received } = await send({ text: 'invite', html: '<p>invite</p>', icalEvent: { method: 'request', content: ics } });
    const raw = received.raw.toString();
    assert.match(raw, /Content-Type: multipart\/alternative/);
    assert.match(raw, /Content-Type: text\/calendar; charset=utf-8; method=REQUEST/);
    const ics2 = received.parsed.attachments.find(a => a.filename === 'invite.ics');
    assert.ok(ics2, 'invite.ics is attached');
    assert.equal(ics2.contentType, 'application/ics');
    assert.equal(ics2.content.toString('utf8'), ics);
});

test('list, xMailer, alternatives, watchHtml and amp arrive', T, async () => {
    const { received } = await send({
        text: 'plain',
        html: '<p>html</p>',
        watchHtml: '<b>watch</b>',
        amp: '<!doctype html><html ⚡4email><body>amp</body></html>',
        alternatives: [{ contentType: 'text/x-web-markdown', content: '**markdown**' }],
        xMailer: 'Backend 2.1',
        list: {
            help: 'admin@example.com?subject=help',
            unsubscribe: [{ url: 'https://example.com/unsub', comment: 'Unsubscribe' }, 'unsub@example.com'],
            unsubscribePost: 'List-Unsubscribe=One-Click',
            id: { url: 'mylist.example.com', comment: 'My list' },
        },
    });
    const head = headerBlock(received.raw);
    assert.match(head, /^List-Help: <mailto:admin@example.com\?subject=help>$/m);
    assert.match(head, /^List-Unsubscribe: <https:\/\/example.com\/unsub> \(Unsubscribe\)$/m);
    assert.match(head, /^List-Unsubscribe: <mailto:unsub@example.com>$/m);
    assert.match(head, /^List-Unsubscribe-Post: List-Unsubscribe=One-Click$/m);
    assert.match(head, /^List-ID: "My list" <mylist.example.com>$/m);
    assert.match(head, /^X-Mailer: Backend 2.1$/m);
    const raw = received.raw.toString();
    for (const type of ['text/watch-html', 'text/x-amp-html', 'text/x-web-markdown']) assert.ok(raw.includes(`Content-Type: ${type}`), type);
    assert.equal(received.parsed.text.trim(), 'plain');
    assert.equal(received.parsed.html.trim(), '<p>html</p>');

    const { received: plain } = await send({ text: 'x', xMailer: false });
    assert.doesNotMatch(headerBlock(plain.raw), /^X-Mailer:/m);
});

test('raw on the message: its bytes as they are, the envelope from the fields', T, async () => {
    const raw = 'From: a@example.com\r\nTo: b@example.com\r\nMessage-ID: <raw-1@example.com>\r\nSubject: raw\r\n\r\nraw body\r\n';
    const { received, info } = await send({ raw, to: 'rcpt@example.com', envelope: { from: TEST_USER, to: ['env@example.com'] } });
    assert.equal(received.raw.toString(), raw);
    assert.deepEqual(received.envelope.to, ['env@example.com']);
    assert.equal(info.messageId, '<raw-1@example.com>');
});

test('href (and path as a URL) are fetched with httpHeaders; a redirect to another host is not followed; disableUrlAccess refuses', T, async () => {
    const url = `http://127.0.0.1:${web.port}`;
    const { received } = await send({
        text: 'x',
        attachments: [{ href: `${url}/report.pdf`, httpHeaders: { 'X-Api-Key': 'k1' } }, { path: `${url}/report.pdf`, filename: 'again.pdf' }],
    });
    const [fetched, again] = received.parsed.attachments;
    assert.equal(fetched.filename, 'report.pdf');
    assert.equal(fetched.contentType, 'application/pdf');
    assert.equal(fetched.content.toString(), '%PDF-1.4 fetched');
    assert.equal(again.content.toString(), '%PDF-1.4 fetched');
    assert.equal(webRequests.find(r => r.headers['x-api-key']).headers['x-api-key'], 'k1');

    const redirected = await rejection(transport.sendMail({ ...base, attachments: [{ href: `${url}/elsewhere` }] }));
    assertCode(redirected, 'EMESSAGE');
    assert.match(redirected.message, /^message\.attachments\[0\]\.href cannot be fetched: .*302.*another host/);

    const plainHttp = await rejection(transport.sendMail({ ...base, attachments: [{ href: 'http://mail.example.com/x.pdf' }] }));
    assertCode(plainHttp, 'EMESSAGE');
    assert.match(plainHttp.message, /only https is fetched/);

    const count = webRequests.length;
    const refused = await rejection(transport.sendMail({ ...base, disableUrlAccess: true, attachments: [{ href: `${url}/report.pdf` }] }));
    assertCode(refused, 'EMESSAGE');
    assert.match(refused.message, /^message\.attachments\[0\]\.href is a URL and URL access is disabled \(disableUrlAccess\)/);
    assert.equal(webRequests.length, count, 'no request was made');
});

test('attachment raw, headers, contentTransferEncoding, contentDisposition and cid', T, async () => {
    const { received } = await send({
        html: '<img src="cid:logo@x">',
        attachments: [
            { filename: 'logo.png', content: PNG, cid: 'logo@x' },
            { filename: 'inline.txt', content: 'shown inline', contentDisposition: 'inline', headers: { 'X-Part': 'p1' } },
            { filename: 'qp.txt', content: 'caf\u00e9', contentTransferEncoding: 'quoted-printable' },
            { raw: 'Content-Type: text/plain; name="raw.txt"\r\nContent-Disposition: attachment; filename="raw.txt"\r\n\r\nraw part' },
        ],
    });
    const raw = received.raw.toString();
    assert.match(raw, /Content-Type: multipart\/related; type="text\/html"/);
    assert.match(raw, /X-Part: p1/);
    assert.match(raw, /filename="qp.txt"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9/);
    const byName = Object.fromEntries(received.parsed.attachments.map(a => [a.filename, a]));
    assert.equal(byName['logo.png'].cid, 'logo@x');
    assert.equal(byName['logo.png'].contentDisposition, 'inline');
    // mailparser shows an inline text part as body text, not as an attachment.
    assert.match(raw, /Content-Disposition: inline; filename="inline.txt"/);
    assert.equal(byName['qp.txt'].content.toString(), 'café');
    assert.equal(byName['raw.txt'].content.toString(), 'raw part');
});

test('attachDataUrls: data: images in the html become inline attachments referenced by cid', T, async () => {
    const html = `<p>logo</p><img src="data:image/png;base64,${PNG.toString('base64')}">`;
    const { received } = await send({ html, attachDataUrls: true });
    const [image] = received.parsed.attachments;
    assert.equal(image.filename, 'image-1.png');
    assert.deepEqual(image.content, PNG);
    assert.equal(image.contentDisposition, 'inline');
    assert.ok(image.cid.endsWith('@localhost'));
    assert.ok(received.parsed.html.includes(`src="cid:${image.cid}"`), received.parsed.html);

    const { received: untouched } = await send({ html });
    assert.equal(untouched.parsed.attachments.length, 0);
});

test('an unknown message field or config key is told once per name, with the closest known name', T, async () => {
    const warnings = [];
    const onWarning = warning => warnings.push(warning.message);
    process.on('warning', onWarning);
    const logged = [];
    const logger = { debug() {}, info() {}, warn: line => logged.push(line), error() {} };
    try {
        const quiet = env.track(createTransport(env.config({ maxConnection: 1, logger })));
        env.track(createTransport(env.config({ maxConnection: 1 })));
        await quiet.sendMail({ ...base, text: 'x', attachements: [] });
        await quiet.sendMail({ ...base, text: 'x', attachements: [], attachments: [{ content: 'a', fileName: 'a.txt' }] });
        await new Promise(resolve => setImmediate(resolve));
    } finally {
        process.off('warning', onWarning);
    }
    const expected = [
        'smtp-oauth-transport: `maxConnection` is not a config key; did you mean `maxConnections`?',
        'smtp-oauth-transport: `attachements` is not a message field; did you mean `attachments`?',
        'smtp-oauth-transport: `fileName` is not an attachment field; did you mean `filename`?',
    ];
    assert.deepEqual(warnings, expected);
    assert.deepEqual(logged, expected);
});
