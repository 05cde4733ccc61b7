// Process lifecycle: a native addon must neither keep a finished script alive nor crash
// it when objects are collected or the process exits in the middle of work.
// Each scenario runs support/child-send.cjs in its own node process.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CRASH_PATTERN, runChild } from './support/child.mjs';
import { loadTransport } from './support/config.mjs';
import { startEnv } from './support/env.mjs';

// Fail early, in this process, with a clear message if the package cannot be loaded.
loadTransport();

const T = { timeout: 30000 };

let env;

before(async () => {
    env = await startEnv();
});

after(async () => {
    await env.close();
});

function assertCleanExit(result, label) {
    assert.equal(result.killed, false, `${label}: still running after the guard timeout, killed. stderr: ${result.stderr}`);
    assert.equal(result.signal, null, `${label}: ended by signal ${result.signal}. stderr: ${result.stderr}`);
    assert.equal(result.code, 0, `${label}: exit code ${result.code}. stderr: ${result.stderr}`);
    assert.doesNotMatch(result.stderr, CRASH_PATTERN, `${label}: crash output on stderr`);
}

test('cron-style script without close() exits by itself within 5 s of sending', T, async () => {
    const before = env.smtp.messages.length;
    const child = runChild('cron', env.config());
    const sent = await child.waitForLine(/^SENT /);
    const result = await child.exited;

    assertCleanExit(result, 'cron');
    const lingered = result.at - sent.at;
    assert.ok(lingered < 5000, `the process lingered ${lingered} ms after sending`);
    assert.equal(env.smtp.messages.length, before + 1, 'the message was delivered');
    const { messageId } = JSON.parse(sent.text.slice('SENT '.length));
    assert.equal(env.smtp.messages.at(-1).parsed.messageId, messageId);
});

test('dropping transports and forcing GC does not crash the process', T, async () => {
    const before = env.smtp.messages.length;
    const child = runChild('gc', env.config(), { nodeArgs: ['--expose-gc'] });
    const result = await child.exited;

    assertCleanExit(result, 'gc');
    assert.match(result.stdout, /^SENT /m);
    assert.match(result.stdout, /^GC-DONE$/m, `did not get through the GC rounds. stderr: ${result.stderr}`);
    assert.equal(env.smtp.messages.length, before + 1);
});

test('process.exit(0) while the token request is in flight exits cleanly', T, async t => {
    // Hold the token request: tell the child to exit and never answer.
    let child;
    env.token.setHandler(() => {
        child.proc.stdin.write('exit\n');
        // no response; the token server's close() destroys the socket
    });
    t.after(() => env.token.setHandler(null));

    child = runChild('inflight', env.config());
    const result = await child.exited;
    assertCleanExit(result, 'exit during token request');
    assert.match(result.stdout, /^STARTED$/m);
    assert.doesNotMatch(result.stdout, /^SENT/m, 'the send was still in flight');
});

test('process.exit(0) while the SMTP transaction is in flight exits cleanly', T, async t => {
    // A second SMTP server that holds the reply to DATA for 5 s; the child is told to exit
    // as soon as DATA starts, i.e. with a TLS session and an authenticated SMTP session open.
    const slow = await startEnv({ smtp: { dataDelayMs: 5000 } });
    t.after(() => slow.close());
    const child = runChild('inflight', slow.config());
    slow.smtp.events.once('data-start', () => child.proc.stdin.write('exit\n'));

    const result = await child.exited;
    assertCleanExit(result, 'exit during DATA');
    assert.match(result.stdout, /^STARTED$/m);
    assert.doesNotMatch(result.stdout, /^SENT/m, 'the send was still in flight');
    assert.equal(slow.smtp.authAttempts.length >= 1, true, 'it got as far as AUTH');
});
