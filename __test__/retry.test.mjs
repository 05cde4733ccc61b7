// Retries that lose nothing: transient failures (4xx, a connection lost before the final
// ".", timeouts before the message was sent) are retried on a fresh connection with a
// jittered backoff; permanent refusals are not; and a message whose final "." reached the
// server without a reply is never resent blindly (EUNKNOWN_DELIVERY).
// Each test starts its own servers with the fault it needs (support/smtp-server.mjs).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { loadTransport, TEST_USER } from './support/config.mjs';
import { setupTransport } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';
import { sleep } from './support/wait.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 30000 };

const firstOnly = value => index => (index === 0 ? value : null);
const SERVICE_NOT_AVAILABLE = { responseCode: 421, message: '4.3.2 Service not available' };
const THREAD_LIMIT = { responseCode: 432, message: '4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded' };
const SEND_AS_DENIED = { responseCode: 550, message: '5.7.60 SMTP; Client does not have permissions to send as this sender' };

let counter = 0;
function message(extra = {}) {
    counter += 1;
    return {
        from: TEST_USER,
        to: 'rcpt@example.com',
        subject: `retry ${counter}`,
        text: `retry test message ${counter}`,
        messageId: `<retry-${counter}-${crypto.randomBytes(4).toString('hex')}@example.com>`,
        ...extra
    };
}

/** How often each Message-ID arrived complete (final "." seen) at the server. */
function arrivals(smtp, messageId) {
    return smtp.received.filter(r => r.messageId === messageId).length;
}

const setup = (t, options) => setupTransport(t, createTransport, options);

for (const pool of [false, true]) {
    const mode = pool ? 'pooled' : 'one connection per message';

    test(`[${mode}] connection dropped at DATA (before 354) on the first attempt -> delivered exactly once`, T, async t => {
        const { env, transport } = await setup(t, { smtp: { dataFault: firstOnly('drop-at-data') }, config: { pool } });
        const msg = message();
        const info = await transport.sendMail(msg);

        assert.equal(info.messageId, msg.messageId);
        assert.match(info.response, /^250 /);
        assert.equal('attempts' in info, false, 'a successful send does not expose attempts');
        assert.equal(env.smtp.connections.length, 2, 'the retry used a fresh connection');
        assert.equal(env.smtp.dataCommands, 2);
        assert.equal(env.smtp.messages.length, 1);
        assert.equal(arrivals(env.smtp, msg.messageId), 1);
        assert.equal(env.token.requests.length, 1, 'the retry reused the cached token');
    });

    test(`[${mode}] connection dropped in the middle of the message body -> retried, delivered exactly once`, T, async t => {
        const { env, transport } = await setup(t, { smtp: { dataFault: firstOnly('drop-mid-data') }, config: { pool } });
        // Larger than the socket buffers (client send + server receive, ~4 MB on Linux), so
        // the client is still writing the body when the connection goes away.
        const content = crypto.randomBytes(6 * 1024 * 1024);
        const msg = message({ attachments: [{ filename: 'big.bin', content }] });
        const info = await transport.sendMail(msg);

        assert.equal(info.messageId, msg.messageId);
        assert.equal(env.smtp.connections.length, 2);
        assert.equal(env.smtp.dataCommands, 2);
        // The first attempt's final "." never arrived: only the retry is a complete message.
        assert.equal(arrivals(env.smtp, msg.messageId), 1);
        assert.equal(env.smtp.messages.length, 1);
        const got = env.smtp.messages[0].parsed.attachments[0].content;
        assert.ok(Buffer.compare(got, content) === 0, 'the attachment arrived intact');
    });

    test(`[${mode}] server closes after the final "." without replying -> EUNKNOWN_DELIVERY, not resent`, T, async t => {
        const { env, transport } = await setup(t, { smtp: { dataFault: firstOnly('drop-after-dot') }, config: { pool } });
        const msg = message();
        const err = await rejection(transport.sendMail(msg));

        assertCode(err, 'EUNKNOWN_DELIVERY');
        assert.equal(err.attempts, 1);
        assert.equal(err.command, 'DATA');
        assert.equal(typeof err.permanent, 'boolean');
        assert.match(err.message, /not (been )?resent|may or may not/i);
        // Longer than the whole backoff of a first retry: a silent resend would show by now.
        await sleep(1500);
        assert.equal(arrivals(env.smtp, msg.messageId), 1, 'the server received the message exactly once');
        assert.equal(env.smtp.dataCommands, 1, 'no second DATA');
        assert.equal(env.smtp.connections.length, 1, 'no second connection');

        // The transport is still usable (a pool replaces the broken connection).
        const next = message();
        const info = await transport.sendMail(next);
        assert.equal(info.messageId, next.messageId);
        assert.equal(arrivals(env.smtp, next.messageId), 1);
        assert.equal(arrivals(env.smtp, msg.messageId), 1);
    });

    test(`[${mode}] server silent after the final "." past socketTimeout -> EUNKNOWN_DELIVERY, not resent`, T, async t => {
        const { env, transport } = await setup(t, {
            smtp: { dataFault: firstOnly('no-reply') },
            config: { pool, socketTimeout: 1000 }
        });
        const msg = message();
        const started = Date.now();
        const err = await rejection(transport.sendMail(msg));
        const elapsed = Date.now() - started;

        assertCode(err, 'EUNKNOWN_DELIVERY');
        assert.equal(err.attempts, 1);
        assert.ok(elapsed >= 900, `rejected after ${elapsed} ms, before socketTimeout (1000 ms)`);
        await sleep(1500);
        assert.equal(arrivals(env.smtp, msg.messageId), 1);
        assert.equal(env.smtp.dataCommands, 1);
        assert.equal(env.smtp.connections.length, 1);
    });

    test(`[${mode}] 451 in reply to the final "." (the server did not take it) -> retried, delivered once`, T, async t => {
        const { env, transport } = await setup(t, { smtp: { dataFault: firstOnly('tempfail-after-dot') }, config: { pool } });
        const msg = message();
        const info = await transport.sendMail(msg);

        assert.equal(info.messageId, msg.messageId);
        assert.equal(env.smtp.dataCommands, 2);
        assert.equal(env.smtp.messages.length, 1, 'accepted once');
        assert.deepEqual(
            env.smtp.received.map(r => r.fault),
            ['tempfail-after-dot', null]
        );
    });

    test(`[${mode}] 421 greeting on the first connection, then success -> delivered`, T, async t => {
        const { env, transport } = await setup(t, {
            smtp: { refuseConnection: firstOnly(SERVICE_NOT_AVAILABLE) },
            config: { pool }
        });
        const msg = message();
        const started = Date.now();
        const info = await transport.sendMail(msg);
        const elapsed = Date.now() - started;

        assert.equal(info.messageId, msg.messageId);
        assert.equal(env.smtp.connections.length, 2);
        assert.equal(arrivals(env.smtp, msg.messageId), 1);
        // ~0.5 s jittered backoff before the retry (at least a few hundred ms, not seconds).
        const gap = env.smtp.connections[1].openedAt - env.smtp.connections[0].openedAt;
        assert.ok(gap >= 200 && gap <= 1500, `the retry came ${gap} ms after the first connection`);
        assert.ok(elapsed < 5000, `took ${elapsed} ms`);
    });

    test(`[${mode}] 432 4.3.2 sender thread limit exceeded on MAIL FROM, then success -> delivered`, T, async t => {
        const { env, transport } = await setup(t, { smtp: { refuseMailFrom: firstOnly(THREAD_LIMIT) }, config: { pool } });
        const msg = message();
        const info = await transport.sendMail(msg);

        assert.equal(info.messageId, msg.messageId);
        assert.equal(env.smtp.mailFromAttempts.length, 2, 'MAIL FROM was tried twice');
        assert.equal(env.smtp.messages.length, 1);
        assert.equal(arrivals(env.smtp, msg.messageId), 1);
    });

    test(`[${mode}] permanent 550 on MAIL FROM -> EENVELOPE, attempts 1, not retried`, T, async t => {
        const { env, transport } = await setup(t, { smtp: { refuseMailFrom: () => SEND_AS_DENIED }, config: { pool } });
        const err = await rejection(transport.sendMail(message()));

        assertCode(err, 'EENVELOPE');
        assert.equal(err.attempts, 1);
        assert.equal(err.permanent, true);
        assert.equal(err.responseCode, 550);
        assert.equal(err.command, 'MAIL FROM');
        assert.match(err.response, /5\.7\.60/);
        await sleep(1200);
        assert.equal(env.smtp.mailFromAttempts.length, 1, 'the server saw one MAIL FROM');
        assert.equal(env.smtp.connections.length, 1);
        assert.equal(env.smtp.messages.length, 0);
    });

    test(`[${mode}] maxRetries: 0 -> a 421 fails at once with attempts 1`, T, async t => {
        const { env, transport } = await setup(t, {
            smtp: { refuseConnection: firstOnly(SERVICE_NOT_AVAILABLE) },
            config: { pool, maxRetries: 0 }
        });
        const started = Date.now();
        const err = await rejection(transport.sendMail(message()));
        const elapsed = Date.now() - started;

        assertCode(err, 'ECONNECTION');
        assert.equal(err.attempts, 1);
        assert.equal(err.responseCode, 421);
        assert.equal(err.permanent, false);
        assert.match(err.response, /4\.3\.2 Service not available/);
        assert.ok(elapsed < 1000, `took ${elapsed} ms`);
        await sleep(800);
        assert.equal(env.smtp.connections.length, 1, 'no retry');
    });
}

test('a server that always answers 421: 3 retries by default (4 attempts), backoff ~0.5 s, ~1 s, ~2 s', T, async t => {
    const { env, transport } = await setup(t, { smtp: { refuseConnection: () => SERVICE_NOT_AVAILABLE } });
    const err = await rejection(transport.sendMail(message()));

    assertCode(err, 'ECONNECTION');
    assert.equal(err.attempts, 4);
    assert.equal(err.responseCode, 421);
    assert.equal(err.command, 'CONN');
    assert.equal(err.permanent, false);
    assert.equal(env.smtp.connections.length, 4);
    const opened = env.smtp.connections.map(c => c.openedAt);
    const gaps = opened.slice(1).map((at, i) => at - opened[i]);
    // Nominal 500, 1000, 2000 ms, jittered; the server adds ~100 ms before each greeting.
    const bounds = [
        [200, 1200],
        [400, 2000],
        [800, 3500]
    ];
    gaps.forEach((gap, i) => {
        const [min, max] = bounds[i];
        assert.ok(gap >= min && gap <= max, `gap before retry ${i + 1} was ${gap} ms (expected ${min}-${max}): ${gaps}`);
    });
    assert.ok(gaps[2] > gaps[0], `the backoff grows: ${gaps}`);
});

test('maxRetries: 1 -> a server that always answers 421 is tried twice', T, async t => {
    const { env, transport } = await setup(t, {
        smtp: { refuseConnection: () => SERVICE_NOT_AVAILABLE },
        config: { maxRetries: 1 }
    });
    const err = await rejection(transport.sendMail(message()));
    assertCode(err, 'ECONNECTION');
    assert.equal(err.attempts, 2);
    assert.equal(env.smtp.connections.length, 2);
});

test('greeting timeout on the first connection (a timeout before the message was sent) -> retried, delivered', T, async t => {
    const { env, transport } = await setup(t, {
        smtp: { greetingDelayMs: index => (index === 0 ? 3000 : 0) },
        config: { greetingTimeout: 600 }
    });
    const msg = message();
    const info = await transport.sendMail(msg);
    assert.equal(info.messageId, msg.messageId);
    assert.equal(env.smtp.connections.length, 2);
    assert.equal(arrivals(env.smtp, msg.messageId), 1);
});

test('a greeting timeout on every attempt rejects ETIMEDOUT with attempts = maxRetries + 1', T, async t => {
    const { env, transport } = await setup(t, {
        smtp: { greetingDelayMs: () => 5000 },
        config: { greetingTimeout: 300, maxRetries: 1 }
    });
    const err = await rejection(transport.sendMail(message()));
    assertCode(err, 'ETIMEDOUT');
    assert.equal(err.attempts, 2);
    assert.equal(err.permanent, false);
    assert.equal(env.smtp.connections.length, 2);
    assert.equal(env.smtp.messages.length, 0);
});

test('a transient failure of some messages in a pooled batch: every message delivered exactly once', T, async t => {
    // The first attempt of every 4th message loses its connection at DATA, the first
    // attempt of every 5th is answered 432 at MAIL FROM (the server tells the messages
    // apart by their envelope addresses).
    const seenRcpt = new Set();
    const seenFrom = new Set();
    const firstTime = (set, key) => !set.has(key) && set.add(key);
    const { env, transport } = await setup(t, {
        smtp: {
            dataFault: (index, session) => {
                const rcpt = session.envelope.rcptTo[0].address;
                return rcpt.startsWith('drop-') && firstTime(seenRcpt, rcpt) ? 'drop-at-data' : null;
            },
            refuseMailFrom: (index, address) =>
                address.startsWith('limit+') && firstTime(seenFrom, address) ? THREAD_LIMIT : null
        },
        config: { pool: true, maxConnections: 3 }
    });
    const batch = Array.from({ length: 20 }, (_, i) =>
        message({
            to: i % 4 === 1 ? `drop-${i}@example.com` : `rcpt-${i}@example.com`,
            envelope: {
                from: i % 5 === 2 ? `limit+${i}@example.com` : TEST_USER,
                to: i % 4 === 1 ? `drop-${i}@example.com` : `rcpt-${i}@example.com`
            }
        })
    );
    const infos = await Promise.all(batch.map(m => transport.sendMail(m)));

    assert.deepEqual(
        infos.map(i => i.messageId),
        batch.map(m => m.messageId)
    );
    for (const m of batch) {
        assert.equal(arrivals(env.smtp, m.messageId), 1, `${m.messageId} arrived once`);
    }
    assert.equal(env.smtp.messages.length, 20);
    assert.equal(seenRcpt.size, 5, 'five messages lost their first connection');
    assert.equal(seenFrom.size, 4, 'four messages were refused 432 once');
    assert.equal(env.smtp.mailFromAttempts.length, 20 + 5 + 4);
    assert.ok(env.smtp.peakConnections <= 3, `peak ${env.smtp.peakConnections} connections`);
    assert.equal(env.token.requests.length, 1);
});
