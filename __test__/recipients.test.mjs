// Partial delivery: refused recipients are reported per address, the rest still get
// the message; only when nobody is left does sendMail() reject.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadTransport, TEST_USER } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 20000 };

let env;
let transport;

before(async () => {
    env = await startEnv({ smtp: { refuseRecipients: ['bad@example.com', 'worse@example.com'] } });
    transport = env.track(createTransport(env.config()));
});

after(async () => {
    await env.close();
});

const sorted = list => [...list].sort();

test('one of three recipients refused -> resolves, the other two get the message', T, async () => {
    const before = env.smtp.messages.length;
    const info = await transport.sendMail({
        from: TEST_USER,
        to: ['good1@example.com', 'Bad Recipient <bad@example.com>'],
        cc: 'good2@example.com',
        subject: 'partial',
        text: 'x'
    });

    assert.deepEqual(info.rejected, ['bad@example.com']);
    assert.deepEqual(sorted(info.accepted), ['good1@example.com', 'good2@example.com']);
    assert.ok(Array.isArray(info.rejectedErrors));
    assert.equal(info.rejectedErrors.length, 1);
    const rcptErr = info.rejectedErrors[0];
    assert.equal(rcptErr.recipient, 'bad@example.com');
    assert.equal(rcptErr.responseCode, 550);
    assert.equal(typeof rcptErr.response, 'string');
    assert.match(rcptErr.response, /5\.1\.1 <bad@example\.com>: Recipient address rejected/);
    assert.match(info.response, /^250[ -]/);

    assert.equal(env.smtp.messages.length, before + 1);
    const message = env.smtp.messages.at(-1);
    assert.deepEqual(sorted(message.envelope.to), ['good1@example.com', 'good2@example.com']);
    assert.equal(info.messageId, message.parsed.messageId);
    // The refused address is still a visible To: recipient, as the sender wrote it.
    assert.deepEqual(
        message.parsed.to.value.map(a => a.address),
        ['good1@example.com', 'bad@example.com']
    );
});

test('all recipients refused -> rejects EENVELOPE listing them, nothing delivered', T, async () => {
    const before = env.smtp.messages.length;
    const err = await rejection(
        transport.sendMail({
            from: TEST_USER,
            to: ['bad@example.com', 'worse@example.com'],
            subject: 'nobody',
            text: 'x'
        })
    );
    assertCode(err, 'EENVELOPE');
    assert.ok(err.message.includes('bad@example.com'), err.message);
    assert.ok(err.message.includes('worse@example.com'), err.message);
    assert.equal(env.smtp.messages.length, before);
});

test('the transport keeps working after an all-refused rejection', T, async () => {
    await rejection(transport.sendMail({ from: TEST_USER, to: 'bad@example.com', subject: 'nobody', text: 'x' }));
    const info = await transport.sendMail({ from: TEST_USER, to: 'good3@example.com', subject: 'after', text: 'x' });
    assert.deepEqual(info.accepted, ['good3@example.com']);
    assert.equal(env.smtp.messages.at(-1).parsed.subject, 'after');
});
