// Attachments that name local files or URLs: a message built from user input must not be
// able to attach any file the process can read. disableFileAccess / disableUrlAccess as in
// nodemailer (transport config, defaults, message; one-way), maxFileSize, and URLs fetched,
// never taken for file names.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadTransport } from './support/config.mjs';
import { setupTransport } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };

function tempFile(t, name, content) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'file-access-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, name);
    fs.writeFileSync(file, content);
    return file;
}

const withAttachment = (attachment, extra = {}) => ({
    to: 'rcpt@example.com',
    subject: 'attachment',
    text: 'x',
    attachments: [attachment],
    ...extra
});

async function refused(env, sending, field, pattern) {
    const before = env.smtp.messages.length;
    const err = await rejection(sending);
    assertCode(err, 'EMESSAGE');
    assert.ok(err.message.startsWith(`${field} `), err.message);
    assert.match(err.message, pattern);
    assert.equal(err.permanent, true);
    assert.equal(env.smtp.messages.length, before, 'nothing was sent');
    return err;
}

test('disableFileAccess in the transport config: an attachment path -> EMESSAGE naming message.attachments[0].path, nothing read or sent', T, async t => {
    const file = tempFile(t, 'secret.txt', 'local secret');
    const { env, transport } = await setupTransport(t, createTransport, { config: { disableFileAccess: true } });
    await refused(env, transport.sendMail(withAttachment({ path: file })), 'message.attachments[0].path', /file access is disabled \(disableFileAccess\)/);
    // Content given as bytes is still fine.
    await transport.sendMail(withAttachment({ filename: 'a.txt', content: 'inline bytes' }));
    assert.equal(env.smtp.messages.at(-1).parsed.attachments[0].content.toString(), 'inline bytes');
});

test('disableFileAccess on the message or in the defaults blocks too; a message cannot switch off what the transport or the defaults switched on', T, async t => {
    const file = tempFile(t, 'secret.txt', 'local secret');
    const { env, transport } = await setupTransport(t, createTransport);
    const blocked = /file access is disabled \(disableFileAccess\)/;
    await refused(env, transport.sendMail(withAttachment({ path: file }, { disableFileAccess: true })), 'message.attachments[0].path', blocked);

    const closed = env.track(createTransport(env.config({ disableFileAccess: true })));
    await refused(env, closed.sendMail(withAttachment({ path: file }, { disableFileAccess: false })), 'message.attachments[0].path', blocked);

    const byDefaults = env.track(createTransport(env.config(), { disableFileAccess: true }));
    await refused(env, byDefaults.sendMail(withAttachment({ path: file }, { disableFileAccess: false })), 'message.attachments[0].path', blocked);

    await refused(env, transport.sendMail(withAttachment({ path: file }, { disableFileAccess: 'yes' })), 'message.disableFileAccess', /must be true or false/);
    // Without any flag the file is attached.
    await transport.sendMail(withAttachment({ path: file }));
    assert.equal(env.smtp.messages.at(-1).parsed.attachments[0].content.toString(), 'local secret');
});

test('an http(s) URL as path or href is fetched, never read as a file; disableUrlAccess blocks it at any level (one-way); the URL credentials never in an error', T, async t => {
    const requests = [];
    const web = http.createServer((req, res) => {
        requests.push(req.url);
        res.writeHead(200, { 'content-type': 'application/pdf' });
        res.end('remote bytes');
    });
    await new Promise(resolve => web.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise(resolve => web.close(resolve)));
    const { env, transport } = await setupTransport(t, createTransport);
    const url = `http://127.0.0.1:${web.address().port}/report.pdf`;
    for (const attachment of [{ path: url }, { path: url.replace('http:', 'HTTP:') }, { href: url }]) {
        await transport.sendMail(withAttachment(attachment));
        assert.equal(env.smtp.messages.at(-1).parsed.attachments[0].content.toString(), 'remote bytes');
    }
    assert.equal(requests.length, 3);

    // An unreachable URL with credentials: refused, the password not repeated.
    const closedPort = await new Promise(resolve => {
        const probe = net.createServer().listen(0, '127.0.0.1', () => {
            const { port } = probe.address();
            probe.close(() => resolve(port));
        });
    });
    const secretUrl = `http://user:hunter2@127.0.0.1:${closedPort}/report.pdf`;
    for (const key of ['path', 'href']) {
        const err = await refused(env, transport.sendMail(withAttachment({ [key]: secretUrl })), `message.attachments[0].${key}`, /cannot be fetched/);
        assert.doesNotMatch(err.message, /hunter2/);
    }

    const blocked = /is a URL and URL access is disabled \(disableUrlAccess\)/;
    for (const key of ['path', 'href']) {
        const err = await refused(env, transport.sendMail(withAttachment({ [key]: secretUrl.replace(`:${closedPort}`, `:${web.address().port}`) }, { disableUrlAccess: true })), `message.attachments[0].${key}`, blocked);
        assert.doesNotMatch(err.message, /hunter2/);
    }
    const closed = env.track(createTransport(env.config({ disableUrlAccess: true })));
    await refused(env, closed.sendMail(withAttachment({ path: url }, { disableUrlAccess: false })), 'message.attachments[0].path', blocked);
    const byDefaults = env.track(createTransport(env.config(), { disableUrlAccess: true }));
    await refused(env, byDefaults.sendMail(withAttachment({ href: url }, { disableUrlAccess: false })), 'message.attachments[0].href', blocked);
    assert.equal(requests.length, 3, 'no request was made while URL access was disabled');
});

test('a file larger than maxFileSize -> EMESSAGE naming the field and the limit; one within it is sent; a bad maxFileSize -> ECONFIG', T, async t => {
    const big = tempFile(t, 'big.bin', Buffer.alloc(2001, 1));
    const fits = tempFile(t, 'fits.bin', Buffer.alloc(2000, 2));
    const { env, transport } = await setupTransport(t, createTransport, { config: { maxFileSize: 2000 } });
    await refused(env, transport.sendMail(withAttachment({ path: big })), 'message.attachments[0].path', /larger than maxFileSize \(2000 bytes\)/);
    await transport.sendMail(withAttachment({ path: fits }));
    assert.equal(env.smtp.messages.at(-1).parsed.attachments[0].content.length, 2000);
    assert.throws(() => createTransport(env.config({ maxFileSize: 0 })), err => err.code === 'ECONFIG' && err.message.startsWith('mail.smtp.maxFileSize '));
});
