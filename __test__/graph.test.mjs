// `api: 'graph'`: the same createTransport and messages, sent through Microsoft Graph's sendMail
// (a local Graph-shaped HTTPS server, support/graph-server.mjs) instead of SMTP. What Graph
// received is parsed with mailparser and compared with what was sent.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import util from 'node:util';
import { after, before, test } from 'node:test';
import { simpleParser } from 'mailparser';
import { makeTestPki, makeUntrustedPki } from './support/certs.mjs';
import { loadTransport, TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_USER } from './support/config.mjs';
import { closeWithin } from './support/env.mjs';
import { captureLogger } from './support/canary.mjs';
import { assertCode, assertNoSecrets, rejection, secretForms } from './support/errors.mjs';
import { CHUNK_UNIT, GRAPH_CLAIMS, GRAPH_SCOPE, graphError, startGraphServer } from './support/graph-server.mjs';
import { startTokenServer } from './support/token-server.mjs';

const require = createRequire(import.meta.url);
const nodemailer = require('nodemailer');
const { createTransport } = loadTransport();
const T = { timeout: 30000 };

let token;
let graph;
const transports = [];

before(async () => {
    token = await startTokenServer({ clientId: TEST_CLIENT_ID, clientSecret: TEST_CLIENT_SECRET, scope: GRAPH_SCOPE, claims: GRAPH_CLAIMS });
    graph = await startGraphServer({ validTokens: () => token.liveTokens(), user: TEST_USER });
});

after(async () => {
    await Promise.all(transports.map(t => closeWithin(t)));
    await graph.close();
    await token.close();
});

/** A TAS config with api: 'graph' against the local servers (no host, no port). */
function graphConfig(overrides = {}) {
    return {
        type: 'oauth2',
        api: 'graph',
        graphUrl: graph.url,
        auth: { user: TEST_USER },
        connectionTimeout: 5000,
        socketTimeout: 10000,
        maxRetries: 2,
        ...overrides,
        oauth2: {
            host: token.url,
            clientId: TEST_CLIENT_ID,
            clientSecret: TEST_CLIENT_SECRET,
            ca: makeTestPki().caPem,
            ...(overrides.oauth2 || {})
        }
    };
}

function track(transport) {
    transports.push(transport);
    return transport;
}

function reset(t) {
    graph.setHandler(null);
    t.after(() => graph.setHandler(null));
}

const ICS = [
    'BEGIN:VCALENDAR',
    'VERSION:2.0',
    'PRODID:-//smtp-oauth-transport//tests//EN',
    'METHOD:REQUEST',
    'BEGIN:VEVENT',
    'UID:graph-test-1@example.com',
    'DTSTAMP:20260101T090000Z',
    'DTSTART:20270115T100000Z',
    'DTEND:20270115T110000Z',
    'SUMMARY:Plánování',
    'END:VEVENT',
    'END:VCALENDAR',
    ''
].join('\r\n');

test('text, HTML, Unicode, a small attachment and a calendar invitation arrive through sendMail, with one token', T, async t => {
    reset(t);
    const transport = track(createTransport(graphConfig()));
    const tokenRequestsBefore = token.requests.length;
    assert.equal(await transport.verify(), true, 'verify(): a Graph token with Mail.Send');
    const before = graph.sent.length;
    const small = crypto.randomBytes(20000);
    const messages = [
        { from: TEST_USER, to: 'rcpt@example.com', subject: 'plain', text: 'just text' },
        { from: TEST_USER, to: 'rcpt@example.com', subject: 'Grüße – 你好 ✓', text: 'ünïcödé ✓', html: '<p>ünïcödé <b>✓</b></p>' },
        {
            from: TEST_USER,
            to: 'rcpt@example.com',
            cc: 'copy@example.com',
            subject: 'with attachment and invitation',
            text: 'see attached',
            // Our builder has no icalEvent (that is nodemailer's, through the plugin API,
            // tested below): an invitation is a text/calendar attachment.
            attachments: [
                { filename: 'data.bin', content: small },
                { filename: 'invite.ics', content: ICS, contentType: 'text/calendar; method=REQUEST' }
            ]
        }
    ];
    const infos = [];
    for (const message of messages) {
        infos.push(await transport.sendMail(message));
    }
    assert.equal(token.requests.length - tokenRequestsBefore, 1, 'one token for all three messages');
    const received = graph.sent.slice(before);
    assert.deepEqual(received.map(r => r.via), ['sendMail', 'sendMail', 'sendMail']);
    const parsed = await Promise.all(received.map(r => simpleParser(r.mime)));
    assert.equal(parsed[0].text.trim(), 'just text');
    assert.equal(parsed[1].subject, 'Grüße – 你好 ✓');
    assert.equal(parsed[1].html.trim(), '<p>ünïcödé <b>✓</b></p>');
    const attachment = parsed[2].attachments.find(a => a.filename === 'data.bin');
    assert.ok(attachment.content.equals(small), 'the attachment arrives byte for byte');
    const calendar = parsed[2].attachments.find(a => a.contentType === 'text/calendar');
    assert.ok(calendar, 'the invitation is a text/calendar part');
    assert.match(calendar.content.toString('utf8'), /METHOD:REQUEST/);
    for (const [i, info] of infos.entries()) {
        assert.equal(info.messageId, parsed[i].messageId, 'info.messageId is the Message-ID Graph received');
        assert.deepEqual(info.rejected, []);
        assert.match(info.response, /^HTTP\/1\.1 202 Accepted request-id: [0-9a-f-]{36}$/);
    }
    assert.deepEqual(infos[2].accepted.sort(), ['copy@example.com', 'rcpt@example.com']);
    const sendMail = graph.requests.filter(r => r.path.endsWith('/sendMail')).at(-1);
    assert.match(sendMail.headers['content-type'], /^text\/plain/);
});

test('a Bcc recipient reaches Graph in a Bcc header and is accepted', T, async t => {
    reset(t);
    const transport = track(createTransport(graphConfig()));
    const before = graph.sent.length;
    const info = await transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', bcc: 'hidden@example.com', subject: 'bcc', text: 'x' });
    assert.deepEqual(info.accepted.sort(), ['hidden@example.com', 'rcpt@example.com']);
    const parsed = await simpleParser(graph.sent[before].mime);
    assert.deepEqual(parsed.bcc.value.map(a => a.address), ['hidden@example.com']);
    assert.deepEqual(parsed.to.value.map(a => a.address), ['rcpt@example.com']);
});

test('a 10 MB attachment goes through a draft and an upload session in 320 KiB multiples', T, async t => {
    reset(t);
    const transport = track(createTransport(graphConfig()));
    const before = graph.sent.length;
    const big = crypto.randomBytes(10 * 1024 * 1024);
    const small = Buffer.from('small attachment ✓');
    const info = await transport.sendMail({
        from: TEST_USER,
        to: 'rcpt@example.com',
        subject: 'large',
        text: 'body ✓',
        attachments: [
            { filename: 'big.bin', content: big },
            { filename: 'small.txt', content: small }
        ]
    });
    assert.match(info.response, /^HTTP\/1\.1 202 Accepted/);
    const received = graph.sent.slice(before);
    assert.equal(received.length, 1);
    assert.equal(received[0].via, 'draft');
    const parsed = await simpleParser(received[0].mime);
    assert.equal(parsed.text.trim(), 'body ✓');
    assert.equal(parsed.messageId, info.messageId);
    const byName = Object.fromEntries(received[0].attachments.map(a => [a.name, a]));
    assert.ok(byName['big.bin'].content.equals(big), 'the 10 MB attachment arrives byte for byte');
    assert.ok(byName['small.txt'].content.equals(small));
    const chunks = byName['big.bin'].chunks;
    assert.ok(chunks.length >= 3);
    assert.ok(chunks.slice(0, -1).every(c => c % CHUNK_UNIT === 0 && c <= 4 * 1024 * 1024), `${chunks}`);
    const uploads = graph.requests.filter(r => r.path.startsWith('/upload/'));
    assert.ok(uploads.every(r => r.headers.authorization === undefined), 'no bearer token goes to the upload URL');
});

test('a 429 during the upload deletes the draft; the whole message is sent again after Retry-After', T, async t => {
    reset(t);
    let uploads = 0;
    graph.setHandler((req, res, record, next) => {
        if (record.path.startsWith('/upload/') && ++uploads === 2) {
            return graph.answer(res, 429, graphError('ApplicationThrottled', 'later'), { 'Retry-After': '1' });
        }
        return next();
    });
    const transport = track(createTransport(graphConfig()));
    const before = graph.sent.length;
    const big = crypto.randomBytes(5 * 1024 * 1024);
    await transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 'retry', text: 'x', attachments: [{ filename: 'big.bin', content: big }] });
    assert.equal(graph.sent.length - before, 1, 'sent once');
    assert.ok(graph.sent.at(-1).attachments[0].content.equals(big));
    assert.equal(graph.drafts.size, 0, 'the abandoned draft was deleted');
    assert.equal(graph.requests.filter(r => r.method === 'DELETE').length >= 1, true);
});

test('a draft step refused (no Mail.ReadWrite) is EAUTH naming Mail.ReadWrite, and the draft is deleted', T, async t => {
    reset(t);
    graph.setHandler((req, res, record, next) =>
        record.path.endsWith('/createUploadSession') ? graph.answer(res, 403, graphError('ErrorAccessDenied', 'Access is denied.')) : next()
    );
    const transport = track(createTransport(graphConfig()));
    const err = await rejection(
        transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x', attachments: [{ filename: 'big.bin', content: crypto.randomBytes(5 * 1024 * 1024) }] })
    );
    assertCode(err, 'EAUTH');
    assert.equal(err.command, 'createUploadSession');
    assert.match(err.hint, /Mail\.ReadWrite/);
    assert.equal(graph.drafts.size, 0);
});

test('an upload URL that is not https gets no attachment (EPROTOCOL)', T, async t => {
    reset(t);
    // Graph's answer, with the upload URL on plain http.
    graph.setHandler((req, res, record, next) =>
        record.path.endsWith('/createUploadSession')
            ? graph.answer(res, 201, { uploadUrl: `http://127.0.0.1:${graph.port}/upload/x`, nextExpectedRanges: ['0-'] })
            : next()
    );
    const transport = track(createTransport(graphConfig({ maxRetries: 0 })));
    const before = graph.requests.filter(r => r.path.startsWith('/upload/')).length;
    const err = await rejection(
        transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x', attachments: [{ filename: 'big.bin', content: crypto.randomBytes(5 * 1024 * 1024) }] })
    );
    assertCode(err, 'EPROTOCOL');
    assert.match(err.message, /uploadUrl is not https/);
    assert.equal(graph.requests.filter(r => r.path.startsWith('/upload/')).length, before);
});

test('saveToSentItems: false sends through a draft marked to be deleted after sending', T, async t => {
    reset(t);
    const transport = track(createTransport(graphConfig({ saveToSentItems: false })));
    const before = graph.sent.length;
    await transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 'no copy', text: 'x' });
    assert.deepEqual(graph.sent.slice(before).map(r => [r.via, r.saveToSentItems]), [['draft', false]]);
});

test('nodemailer\'s plugin API posts nodemailer\'s MIME (with an icalEvent)', T, async t => {
    reset(t);
    const mailer = nodemailer.createTransport(track(createTransport(graphConfig())));
    const before = graph.sent.length;
    const info = await mailer.sendMail({
        from: TEST_USER,
        to: 'rcpt@example.com',
        bcc: 'hidden@example.com',
        subject: 'plugin ✓',
        text: 'via nodemailer',
        icalEvent: { method: 'REQUEST', filename: 'invite.ics', content: ICS }
    });
    assert.deepEqual(info.accepted.sort(), ['hidden@example.com', 'rcpt@example.com']);
    const parsed = await simpleParser(graph.sent[before].mime);
    assert.equal(parsed.subject, 'plugin ✓');
    assert.ok(parsed.attachments.some(a => a.contentType === 'text/calendar' && /UID:graph-test-1/.test(a.content.toString())));
    assert.deepEqual(parsed.bcc.value.map(a => a.address), ['hidden@example.com']);
});

test('403 ErrorAccessDenied is EAUTH with the Graph code and the Mail.Send / access policy hint, not retried', T, async t => {
    reset(t);
    graph.setHandler((req, res, record, next) =>
        record.path.endsWith('/sendMail') ? graph.answer(res, 403, graphError('ErrorAccessDenied', 'Access is denied. Check credentials and try again.')) : next()
    );
    const transport = track(createTransport(graphConfig()));
    const before = graph.requests.length;
    const err = await rejection(transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x' }));
    assertCode(err, 'EAUTH');
    assert.equal(err.statusCode, 403);
    assert.equal(err.graphError, 'ErrorAccessDenied');
    assert.match(err.requestId, /^[0-9a-f-]{36}$/);
    assert.match(err.hint, /Mail\.Send/);
    assert.match(err.hint, /admin consent/);
    assert.match(err.hint, /New-ApplicationAccessPolicy/);
    assert.match(err.hint, /New-ManagementRoleAssignment/);
    assert.equal(graph.requests.length - before, 1, 'a refusal is not retried');
});

test('a token without the Mail.Send role is refused (403) and the hint says so', T, async t => {
    reset(t);
    const noRole = await startTokenServer({ clientId: TEST_CLIENT_ID, clientSecret: TEST_CLIENT_SECRET, scope: GRAPH_SCOPE, claims: { ...GRAPH_CLAIMS, roles: [] } });
    const server = await startGraphServer({ validTokens: () => noRole.liveTokens(), user: TEST_USER });
    t.after(() => Promise.all([noRole.close(), server.close()]));
    const transport = track(createTransport(graphConfig({ graphUrl: server.url, oauth2: { host: noRole.url } })));
    const err = await rejection(transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x' }));
    assertCode(err, 'EAUTH');
    assert.match(err.hint, /no Mail\.Send role/);
    const verifyErr = await rejection(transport.verify());
    assertCode(verifyErr, 'EAUTH');
});

test('401 is answered once with a fresh token, then EAUTH', T, async t => {
    reset(t);
    graph.setHandler((req, res, record, next) =>
        record.path.endsWith('/sendMail') ? graph.answer(res, 401, graphError('InvalidAuthenticationToken', 'Access token has expired or is not yet valid.')) : next()
    );
    const transport = track(createTransport(graphConfig()));
    const tokensBefore = token.requests.length;
    const requestsBefore = graph.requests.length;
    const err = await rejection(transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x' }));
    assertCode(err, 'EAUTH');
    assert.equal(err.graphError, 'InvalidAuthenticationToken');
    assert.equal(token.requests.length - tokensBefore, 2, 'the refused token was replaced once');
    assert.equal(graph.requests.length - requestsBefore, 2);
});

test('ErrorInvalidRecipients is EENVELOPE; content and size refusals are EMESSAGE', T, async t => {
    reset(t);
    const transport = track(createTransport(graphConfig()));
    const answers = [
        [400, 'ErrorInvalidRecipients', 'EENVELOPE'],
        [400, 'ErrorMessageSizeExceeded', 'EMESSAGE'],
        [400, 'ErrorMimeContentInvalidBase64String', 'EMESSAGE'],
        [413, 'RequestBodyTooLarge', 'EMESSAGE']
    ];
    for (const [status, code, expected] of answers) {
        graph.setHandler((req, res, record, next) => (record.path.endsWith('/sendMail') ? graph.answer(res, status, graphError(code, 'refused')) : next()));
        const err = await rejection(transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x' }));
        assertCode(err, expected);
        assert.equal(err.graphError, code);
        assert.equal(err.statusCode, status);
        assert.equal(err.permanent, true);
    }
});

for (const status of [429, 503, 504]) {
    test(`${status} with Retry-After is waited out and retried`, T, async t => {
        reset(t);
        let calls = 0;
        graph.setHandler((req, res, record, next) => {
            if (record.path.endsWith('/sendMail') && ++calls === 1) {
                return graph.answer(res, status, graphError(status === 429 ? 'ApplicationThrottled' : 'ServiceUnavailable', 'later'), { 'Retry-After': '1' });
            }
            return next();
        });
        const transport = track(createTransport(graphConfig()));
        const before = graph.sent.length;
        const info = await transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x' });
        assert.match(info.response, /^HTTP\/1\.1 202/);
        assert.equal(graph.sent.length - before, 1);
        const tries = graph.requests.filter(r => r.path.endsWith('/sendMail')).slice(-2);
        assert.ok(tries[1].at - tries[0].at >= 900, `waited ${tries[1].at - tries[0].at} ms, Retry-After said 1 s`);
    });
}

test('pooled: a 429 with Retry-After is waited out and retried in the pool', T, async t => {
    reset(t);
    let calls = 0;
    graph.setHandler((req, res, record, next) => {
        if (record.path.endsWith('/sendMail') && ++calls === 1) {
            return graph.answer(res, 429, graphError('ApplicationThrottled', 'later'), { 'Retry-After': '1' });
        }
        return next();
    });
    const transport = track(createTransport(graphConfig({ pool: true })));
    const info = await transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x' });
    assert.match(info.response, /^HTTP\/1\.1 202/);
    const tries = graph.requests.filter(r => r.path.endsWith('/sendMail')).slice(-2);
    assert.ok(tries[1].at - tries[0].at >= 900, `waited ${tries[1].at - tries[0].at} ms, Retry-After said 1 s`);
    assert.equal(transport.isIdle(), true);
});

test('throttling beyond maxRetries is ECONNECTION with retryAfter and the attempts', T, async t => {
    reset(t);
    graph.setHandler((req, res, record, next) =>
        record.path.endsWith('/sendMail') ? graph.answer(res, 429, graphError('ApplicationThrottled', 'Application is over its MailboxConcurrency limit.'), { 'Retry-After': '0' }) : next()
    );
    const transport = track(createTransport(graphConfig({ maxRetries: 1 })));
    const before = graph.requests.length;
    const err = await rejection(transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x' }));
    assertCode(err, 'ECONNECTION');
    assert.equal(err.statusCode, 429);
    assert.equal(err.attempts, 2);
    assert.equal(err.retryAfter, 0);
    assert.equal(graph.requests.length - before, 2);
});

test('a connection lost before Graph answered sendMail is EUNKNOWN_DELIVERY and never resent', T, async t => {
    reset(t);
    graph.setHandler((req, res, record, next) => (record.path.endsWith('/sendMail') ? req.socket.destroy() : next()));
    const transport = track(createTransport(graphConfig()));
    const before = graph.requests.length;
    const err = await rejection(transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x' }));
    assertCode(err, 'EUNKNOWN_DELIVERY');
    assert.equal(graph.requests.length - before, 1);
});

for (const pool of [false, true]) {
    test(`at most 4 concurrent requests per mailbox (pool: ${pool}, maxConnections 10)`, T, async t => {
        reset(t);
        const server = await startGraphServer({ validTokens: () => token.liveTokens(), user: TEST_USER });
        t.after(() => server.close());
        server.setHandler(async (req, res, record, next) => {
            await new Promise(resolve => setTimeout(resolve, 100));
            return next();
        });
        const transport = track(createTransport(graphConfig({ graphUrl: server.url, pool, maxConnections: 10 })));
        await Promise.all(Array.from({ length: 12 }, (_, i) => transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: `m${i}`, text: 'x' })));
        assert.equal(server.sent.length, 12);
        assert.ok(server.maxInFlight() <= 4, `${server.maxInFlight()} requests at once`);
        assert.ok(server.maxInFlight() >= 2, 'requests do run in parallel');
    });
}

test('a Graph server with an untrusted certificate never receives the token', T, async t => {
    reset(t);
    const server = await startGraphServer({ validTokens: () => token.liveTokens(), user: TEST_USER, pki: makeUntrustedPki() });
    t.after(() => server.close());
    const transport = track(createTransport(graphConfig({ graphUrl: server.url, maxRetries: 0 })));
    const err = await rejection(transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x' }));
    assertCode(err, ['ECONNECTION', 'ETLS']);
    assert.equal(server.requests.length, 0);
    assert.ok(server.tlsErrors.length > 0);
});

test('a redirect is not followed: the token never goes to another host', T, async t => {
    reset(t);
    const other = await startGraphServer({ validTokens: () => token.liveTokens(), user: TEST_USER });
    t.after(() => other.close());
    graph.setHandler((req, res, record, next) =>
        record.path.endsWith('/sendMail') ? graph.answer(res, 307, undefined, { Location: `${other.url}/users/${TEST_USER}/sendMail` }) : next()
    );
    const transport = track(createTransport(graphConfig()));
    const err = await rejection(transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x' }));
    assertCode(err, 'EPROTOCOL');
    assert.equal(err.statusCode, 307);
    assert.equal(other.requests.length, 0);
});

test('config: api and graphUrl are checked, host and port are not needed', () => {
    const transport = createTransport(graphConfig());
    assert.match(util.inspect(transport), /api: 'graph'/, 'inspection says where mail goes');
    assert.doesNotMatch(util.inspect(transport), /host:/);
    transport.close();
    const bad = [
        [{ api: 'graf' }, /mail\.smtp\.api must be 'smtp' or 'graph'/],
        [{ graphUrl: 'http://graph.example.com/v1.0' }, /mail\.smtp\.graphUrl must be an https:\/\/ URL/],
        [{ saveToSentItems: 'no' }, /mail\.smtp\.saveToSentItems must be/]
    ];
    for (const [overrides, message] of bad) {
        assert.throws(() => createTransport(graphConfig(overrides)), err => err.code === 'ECONFIG' && message.test(err.message));
    }
    assert.throws(
        () => createTransport({ host: 'smtp.example.com', port: 587, graphUrl: graph.url }),
        err => err.code === 'ECONFIG' && /mail\.smtp\.graphUrl is only used with api: 'graph'/.test(err.message)
    );
});

test('secrets: Graph errors (EAUTH, EENVELOPE, EMESSAGE, ECONNECTION, EUNKNOWN_DELIVERY) and the debug log carry no token or secret', T, async t => {
    reset(t);
    const capture = captureLogger();
    const transport = track(createTransport(graphConfig({ logger: capture.logger, debug: true, maxRetries: 0 })));
    const answers = [
        (req, res) => graph.answer(res, 403, graphError('ErrorAccessDenied', 'Access is denied.')),
        (req, res) => graph.answer(res, 401, graphError('InvalidAuthenticationToken', 'expired')),
        (req, res) => graph.answer(res, 400, graphError('ErrorInvalidRecipients', 'bad')),
        (req, res) => graph.answer(res, 400, graphError('ErrorMessageSizeExceeded', 'too big')),
        (req, res) => graph.answer(res, 429, graphError('ApplicationThrottled', 'slow down'), { 'Retry-After': '0' }),
        req => req.socket.destroy()
    ];
    const errors = [];
    for (const respond of answers) {
        graph.setHandler((req, res, record, next) => (record.path.endsWith('/sendMail') ? respond(req, res) : next()));
        errors.push(await rejection(transport.sendMail({ from: TEST_USER, to: 'rcpt@example.com', subject: 's', text: 'x' })));
    }
    assert.deepEqual(errors.map(e => e.code), ['EAUTH', 'EAUTH', 'EENVELOPE', 'EMESSAGE', 'ECONNECTION', 'EUNKNOWN_DELIVERY']);
    await capture.settle();
    const secrets = { 'client secret': secretForms(TEST_CLIENT_SECRET) };
    token.issued.forEach((issued, i) => {
        secrets[`token ${i}`] = [issued, `Bearer ${issued}`];
    });
    for (const err of errors) {
        assertNoSecrets(err, secrets);
    }
    assertNoSecrets({ message: capture.text() }, secrets);
    assert.match(capture.text(), /POST \/v1\.0\/users\/.*\/sendMail/, 'the debug transcript names the requests');
});
