// Sending at volume with `pool: true`: bounded connections reused for maxMessages
// messages, one token provider for all of them, rateLimit pacing, close() that loses
// nothing (or, with force, rejects what is still queued), isIdle()/'idle', and a process
// that still exits by itself while pooled connections idle.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { recordQuits, runCronChild } from './support/child.mjs';
import { basicConfig, loadTransport, TEST_PASSWORD, TEST_USER } from './support/config.mjs';
import { setupTransport, startEnv } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';
import { startSmtpServer } from './support/smtp-server.mjs';
import { sleep, waitFor } from './support/wait.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 30000 };

let counter = 0;
function message(extra = {}) {
    counter += 1;
    return {
        from: TEST_USER,
        to: 'rcpt@example.com',
        subject: `pool ${counter}`,
        text: `pooled message ${counter}`,
        messageId: `<pool-${counter}-${crypto.randomBytes(4).toString('hex')}@example.com>`,
        ...extra
    };
}

/** Message-ID -> how many times it arrived complete at the server. */
function arrivalCounts(smtp) {
    const counts = new Map();
    for (const r of smtp.received) {
        counts.set(r.messageId, (counts.get(r.messageId) || 0) + 1);
    }
    return counts;
}

function withTimeout(promise, ms, label) {
    let timer;
    const timeout = new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`${label} did not settle within ${ms} ms`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const setup = (t, options) => setupTransport(t, createTransport, options);

test('maxConnections 3, 50 concurrent sends: each delivered exactly once, at most 3 connections, 1 token request', T, async t => {
    const { env, transport } = await setup(t, { config: { pool: true, maxConnections: 3 } });
    const batch = Array.from({ length: 50 }, () => message());
    const infos = await Promise.all(batch.map(m => transport.sendMail(m)));

    assert.deepEqual(
        infos.map(i => i.messageId),
        batch.map(m => m.messageId)
    );
    for (const info of infos) {
        assert.deepEqual(info.accepted, ['rcpt@example.com']);
        assert.match(info.response, /^250 /);
    }
    const counts = arrivalCounts(env.smtp);
    for (const m of batch) {
        assert.equal(counts.get(m.messageId), 1, `${m.messageId} arrived ${counts.get(m.messageId) || 0} times`);
    }
    assert.equal(env.smtp.messages.length, 50);
    assert.ok(env.smtp.peakConnections <= 3, `the server saw ${env.smtp.peakConnections} simultaneous connections`);
    assert.ok(env.smtp.connections.length <= 3, `${env.smtp.connections.length} connections for 50 messages`);
    assert.equal(env.token.requests.length, 1, 'all connections share one token');
    assert.equal(env.smtp.authAttempts.length, env.smtp.connections.length, 'one AUTH per connection');
});

test('maxConnections defaults to 3 for type oauth2 (Exchange allows 3 per mailbox)', T, async t => {
    const { env, transport } = await setup(t, { config: { pool: true } });
    await Promise.all(Array.from({ length: 15 }, () => transport.sendMail(message())));
    assert.equal(env.smtp.peakConnections, 3);
    assert.equal(env.smtp.messages.length, 15);
});

test('maxConnections defaults to 5 for basic (PLAIN/LOGIN) auth', T, async t => {
    const smtp = await startSmtpServer({ user: TEST_USER, password: TEST_PASSWORD, authMethods: ['PLAIN', 'LOGIN'] });
    t.after(() => smtp.close());
    const transport = createTransport(basicConfig({ smtpPort: smtp.port, pool: true }));
    t.after(() => withTimeout(transport.close(), 3000, 'close()'));
    await Promise.all(Array.from({ length: 25 }, () => transport.sendMail(message())));
    assert.equal(smtp.peakConnections, 5);
    assert.equal(smtp.messages.length, 25);
});

test('maxMessages 4, maxConnections 1: 10 messages use 3 connections (4 + 4 + 2)', T, async t => {
    const { env, transport } = await setup(t, { config: { pool: true, maxConnections: 1, maxMessages: 4 } });
    const batch = Array.from({ length: 10 }, () => message());
    await Promise.all(batch.map(m => transport.sendMail(m)));

    assert.equal(env.smtp.connections.length, 3);
    const perSession = env.smtp.connections.map(c => env.smtp.received.filter(r => r.id === c.id).length);
    assert.deepEqual(perSession, [4, 4, 2]);
    assert.equal(env.smtp.peakConnections, 1);
    assert.equal(env.token.requests.length, 1);
    // A replaced connection is closed, not left open.
    await waitFor(() => env.smtp.connections.slice(0, 2).every(c => c.closedAt !== null), {
        label: 'the two full connections to close'
    });
});

test('maxMessages Infinity, maxConnections 1: 150 messages (more than the default 100) use one connection', T, async t => {
    const { env, transport } = await setup(t, { config: { pool: true, maxConnections: 1, maxMessages: Infinity } });
    const batch = Array.from({ length: 150 }, () => message());
    await Promise.all(batch.map(m => transport.sendMail(m)));

    assert.equal(env.smtp.connections.length, 1);
    assert.equal(env.smtp.received.length, 150);
});

test('without pool: one connection per message', T, async t => {
    const { env, transport } = await setup(t);
    for (let i = 0; i < 3; i++) {
        await transport.sendMail(message());
    }
    await Promise.all([transport.sendMail(message()), transport.sendMail(message())]);
    assert.equal(env.smtp.connections.length, 5);
    assert.equal(env.smtp.messages.length, 5);
    assert.deepEqual(
        env.smtp.connections.map(c => env.smtp.received.filter(r => r.id === c.id).length),
        [1, 1, 1, 1, 1]
    );
    assert.equal(env.token.requests.length, 1);
    assert.equal(transport.isIdle(), true);
});

test('rateLimit 5 per rateDelta 1000 ms: 10 messages take at least 1 s, none is rejected', T, async t => {
    const { env, transport } = await setup(t, { config: { pool: true, rateLimit: 5, rateDelta: 1000 } });
    const started = Date.now();
    const batch = Array.from({ length: 10 }, () => message());
    const infos = await Promise.all(batch.map(m => transport.sendMail(m)));
    const elapsed = Date.now() - started;

    assert.equal(infos.length, 10);
    assert.equal(env.smtp.messages.length, 10);
    assert.ok(elapsed >= 1000, `10 messages at 5 per second took only ${elapsed} ms`);
    assert.ok(elapsed < 5000, `took ${elapsed} ms`);
    // Seen from the server: no 1 s window holds more than 5 arrivals (50 ms tolerance).
    const at = env.smtp.received.map(r => r.at).sort((a, b) => a - b);
    for (let i = 5; i < at.length; i++) {
        assert.ok(at[i] - at[i - 5] >= 950, `arrivals ${i - 5} and ${i} only ${at[i] - at[i - 5]} ms apart`);
    }
});

test('idleTimeout: an idle pooled connection says QUIT and closes after idleTimeout ms', T, async t => {
    const { env, transport } = await setup(t, { config: { pool: true, idleTimeout: 500 } });
    await transport.sendMail(message());
    const sentAt = Date.now();
    const record = env.smtp.connections[0];
    await waitFor(() => record.closedAt !== null, { timeoutMs: 5000, label: 'the idle connection to close' });
    const idleFor = record.closedAt - sentAt;
    assert.ok(idleFor >= 300 && idleFor <= 3000, `closed ${idleFor} ms after the send (idleTimeout 500)`);

    // The next send opens a new connection.
    await transport.sendMail(message());
    assert.equal(env.smtp.connections.length, 2);
    assert.equal(env.token.requests.length, 1);
});

test('close() waits for 20 queued messages to be delivered, then closes the connections', T, async t => {
    const { env, transport } = await setup(t, { smtp: { dataDelayMs: 20 }, config: { pool: true } });
    const settled = new Array(20).fill(false);
    // sendMail() x20, then close() at once, the way a script ends. (Attachments make the
    // messages take a moment to build: close() must wait for those too.)
    const batch = Array.from({ length: 20 }, () =>
        message({ attachments: [{ filename: 'report.bin', content: crypto.randomBytes(200 * 1024) }] })
    );
    const sends = batch.map((m, i) =>
        transport.sendMail(m).then(info => {
            settled[i] = true;
            return info;
        })
    );
    const outcomes = Promise.allSettled(sends);
    await withTimeout(transport.close(), 20000, 'close()');

    const results = await outcomes;
    const lost = results.filter(r => r.status === 'rejected').map(r => `${r.reason.code}: ${r.reason.message}`);
    assert.deepEqual(lost, [], 'no message sent before close() was rejected');
    assert.deepEqual(settled, new Array(20).fill(true), 'every send resolved before close() did');
    const infos = results.map(r => r.value);
    assert.deepEqual(
        infos.map(i => i.messageId),
        batch.map(m => m.messageId)
    );
    const counts = arrivalCounts(env.smtp);
    assert.ok(batch.every(m => counts.get(m.messageId) === 1));
    await waitFor(() => env.smtp.connections.every(c => c.closedAt !== null), { label: 'every connection to close' });

    const err = await rejection(transport.sendMail(message()));
    assertCode(err, 'ECONNECTION');
    assert.equal(env.smtp.messages.length, 20);
});

test('close({ force: true }): queued messages reject ECONNECTION, nothing is delivered twice, close() resolves', T, async t => {
    const { env, transport } = await setup(t, { smtp: { dataDelayMs: 300 }, config: { pool: true, maxConnections: 2 } });
    const batch = Array.from({ length: 20 }, () => message());
    const sends = batch.map(m => transport.sendMail(m));
    const outcomes = Promise.allSettled(sends);
    await new Promise(resolve => env.smtp.events.once('data-start', resolve));

    await withTimeout(transport.close({ force: true }), 5000, 'close({ force: true })');
    const results = await withTimeout(outcomes, 5000, 'the sends');

    const fulfilled = results.filter(r => r.status === 'fulfilled').map(r => r.value.messageId);
    const rejected = results.map((r, i) => ({ ...r, id: batch[i].messageId })).filter(r => r.status === 'rejected');
    const forced = rejected.filter(r => r.reason.code === 'ECONNECTION' && /force: true/.test(r.reason.message));
    assert.ok(forced.length >= 10, `only ${forced.length} of 20 were rejected by the forced close`);
    for (const r of rejected) {
        assertCode(r.reason, ['ECONNECTION', 'EUNKNOWN_DELIVERY']);
    }

    await sleep(500);
    const counts = arrivalCounts(env.smtp);
    for (const [id, n] of counts) {
        assert.equal(n, 1, `${id} arrived ${n} times`);
    }
    for (const id of fulfilled) {
        assert.equal(counts.get(id), 1, `resolved ${id} was delivered`);
    }
    for (const r of forced) {
        assert.equal(counts.get(r.id), undefined, `${r.id} was rejected by close({ force: true }) but delivered`);
    }
    assert.equal(env.smtp.messages.length, fulfilled.length);
});

test('isIdle(): true with nothing queued, false while the pool is saturated; idle fires after a batch', T, async t => {
    const { transport } = await setup(t, { smtp: { dataDelayMs: 50 }, config: { pool: true, maxConnections: 1 } });
    const idleEvents = [];
    transport.on('idle', () => idleEvents.push({ at: Date.now(), isIdle: transport.isIdle() }));

    assert.equal(transport.isIdle(), true, 'idle before any send');
    const sends = Array.from({ length: 5 }, () => transport.sendMail(message()));
    // (The messages are built off the JS thread: give them a moment to reach the queue.)
    await sleep(30);
    assert.equal(transport.isIdle(), false, 'not idle with 5 messages queued on 1 connection');
    const completions = await Promise.all(sends.map(p => p.then(() => Date.now())));
    assert.equal(transport.isIdle(), true, 'idle again once everything was sent');

    assert.ok(idleEvents.length >= 1, 'the idle event fired');
    assert.ok(idleEvents.every(e => e.isIdle), 'isIdle() is true whenever idle fires');
    const lastDone = Math.max(...completions);
    assert.ok(idleEvents.at(-1).at >= Math.min(...completions), 'idle fires after sends complete');
    assert.ok(lastDone - idleEvents.at(-1).at <= 50, 'the last idle event came with the end of the batch');
});

test("nodemailer's idle pattern (send while isIdle()) keeps up to maxConnections connections busy", T, async t => {
    // nodemailer's documented way to feed a pool: on 'idle', send while isIdle() is true.
    // isIdle() is nodemailer's "the pool can take another message": true while a
    // connection slot is free, so the loop hands the pool maxConnections messages at once.
    const { env, transport } = await setup(t, { smtp: { dataDelayMs: 100 }, config: { pool: true, maxConnections: 3 } });
    const backlog = Array.from({ length: 12 }, () => message());
    const sends = [];
    const pump = () => {
        while (transport.isIdle() && backlog.length) {
            sends.push(transport.sendMail(backlog.shift()));
        }
    };
    transport.on('idle', pump);
    pump();
    await waitFor(() => !backlog.length && sends.length === 12, { timeoutMs: 15000, label: 'the backlog to be handed over' });
    await Promise.all(sends);
    assert.equal(env.smtp.messages.length, 12);
    assert.ok(
        env.smtp.peakConnections >= 2,
        `the pump never had more than ${env.smtp.peakConnections} message(s) in flight: isIdle() turned false after one sendMail() although 3 connection slots were free`
    );
});

test('pooled partial recipient refusal resolves with rejected/rejectedErrors; all refused -> EENVELOPE', T, async t => {
    const { env, transport } = await setup(t, {
        smtp: { refuseRecipients: ['bad@example.com', 'worse@example.com'] },
        config: { pool: true }
    });
    const info = await transport.sendMail(message({ to: ['good@example.com', 'bad@example.com'] }));
    assert.deepEqual(info.accepted, ['good@example.com']);
    assert.deepEqual(info.rejected, ['bad@example.com']);
    assert.equal(info.rejectedErrors.length, 1);
    const [refusal] = info.rejectedErrors;
    assert.equal(refusal.recipient, 'bad@example.com');
    assert.equal(refusal.responseCode, 550);
    assert.equal(refusal.code, 'EENVELOPE');
    assert.match(refusal.response, /^550 5\.1\.1 <bad@example\.com>/);

    const err = await rejection(transport.sendMail(message({ to: ['bad@example.com', 'worse@example.com'] })));
    assertCode(err, 'EENVELOPE');
    assert.equal(err.attempts, 1);
    assert.deepEqual([...err.rejected].sort(), ['bad@example.com', 'worse@example.com']);
    assert.equal(err.rejectedErrors.length, 2);
    for (const e of err.rejectedErrors) {
        assert.equal(e.code, 'EENVELOPE');
        assert.equal(e.responseCode, 550);
    }

    // The connection survives the refusals (RSET) and carries the next message.
    await transport.sendMail(message());
    assert.equal(env.smtp.messages.length, 2);
    assert.equal(env.smtp.connections.length, 1);
});

test('PIPELINING: MAIL FROM, every RCPT TO and DATA arrive in one write', T, async t => {
    const chunks = new Map();
    const { env, transport } = await setup(t, {
        smtp: {
            onSecureSocket: (socket, session) => {
                chunks.set(session.id, []);
                socket.on('data', chunk => chunks.get(session.id).push(chunk.toString('latin1')));
            }
        },
        config: { pool: true }
    });
    await transport.sendMail(message({ to: ['a@example.com', 'b@example.com'], cc: 'c@example.com' }));
    assert.equal(env.smtp.messages.length, 1);
    const seen = [...chunks.values()].flat();
    const envelope = seen.find(c => /^MAIL FROM:/m.test(c));
    assert.ok(envelope, 'MAIL FROM was seen');
    assert.match(envelope, /^MAIL FROM:<sender@example\.com>.*\r\nRCPT TO:<a@example\.com>\r\nRCPT TO:<b@example\.com>\r\nRCPT TO:<c@example\.com>\r\nDATA\r\n$/s);
});

test('5 s tokens over ~15 s of pooled sending: every AUTH used a live token, all delivered', { timeout: 60000 }, async t => {
    const { env, transport } = await setup(t, {
        token: { expiresIn: 5 },
        config: { pool: true, maxConnections: 2, maxMessages: 5 }
    });
    const auths = [];
    env.smtp.events.on('auth', attempt => auths.push({ token: attempt.accessToken, at: Date.now(), accepted: attempt.accepted }));

    const sends = [];
    const started = Date.now();
    for (let i = 0; i < 150 && Date.now() - started < 15000; i++) {
        sends.push(transport.sendMail(message()));
        await sleep(100);
    }
    const results = await Promise.allSettled(sends);
    const failures = results.filter(r => r.status === 'rejected').map(r => `${r.reason.code}: ${r.reason.message}`);
    assert.deepEqual(failures, [], 'every message was delivered');
    assert.equal(env.smtp.messages.length, sends.length);

    assert.ok(auths.length >= sends.length / 5, `${auths.length} AUTHs for ${sends.length} messages (maxMessages 5)`);
    for (const auth of auths) {
        const grant = env.token.grants.find(g => g.token === auth.token);
        assert.ok(grant, 'AUTH used a token the endpoint issued');
        assert.ok(
            grant.expiresAt > auth.at,
            `AUTH at ${new Date(auth.at).toISOString()} used a token that expired at ${new Date(grant.expiresAt).toISOString()}`
        );
        assert.equal(auth.accepted, true);
    }
    const distinct = new Set(auths.map(a => a.token));
    assert.ok(distinct.size >= 3, `only ${distinct.size} distinct tokens over ${Date.now() - started} ms of 5 s tokens`);
    // Renewal at half the lifetime (2.5 s) over ~15 s: about 6-7 requests, not one per connection.
    const requests = env.token.requests.length;
    assert.ok(requests <= 10, `${requests} token requests in ~15 s with 5 s tokens`);
    assert.ok(requests < auths.length, `${requests} token requests for ${auths.length} connections`);
});

test('a cron-style script with pool: true that never calls close() exits by itself within 5 s of the last send', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    // Count the QUITs the server receives: the idle pooled connection is sent QUIT when the
    // child process exits.
    const quits = recordQuits(t);
    // Three sends one after another, no close(): the pooled connection is left idle
    // (idleTimeout is 10 s by default).
    const { sent } = await runCronChild('cron', env.config({ pool: true }), 3);
    assert.equal(env.smtp.messages.length, 3);
    assert.equal(env.smtp.connections.length, 1, 'the three messages shared one pooled connection');
    assert.equal(quits.length, 1, 'the idle pooled connection said QUIT when the process exited');
    assert.deepEqual(
        env.smtp.messages.map(m => m.parsed.messageId),
        sent.map(l => JSON.parse(l.text.slice('SENT '.length)).messageId)
    );
});
