// Process exit with pooled connections: QUIT is said when the process ends naturally or
// through process.exit() (which runs no event loop and no native cleanup hooks), at once
// and without a hang; the 'exit' listener that does it goes away with close().
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { CRASH_PATTERN, runChild } from './support/child.mjs';
import { loadTransport } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { waitFor } from './support/wait.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 30000 };

test('a cron-style script with pool: true ending with process.exit(0) right after its last send exits at once with code 0, and the idle pooled connection is sent QUIT', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    // smtp-server has no command hook, so its dispatcher is wrapped to see the QUIT.
    const quits = [];
    const onCommand = SMTPConnection.prototype._onCommand;
    SMTPConnection.prototype._onCommand = function (command, callback) {
        if (/^QUIT\b/i.test(command.toString())) quits.push(Date.now());
        return onCommand.call(this, command, callback);
    };
    t.after(() => {
        SMTPConnection.prototype._onCommand = onCommand;
    });
    const child = runChild('cron-exit', env.config({ pool: true }), { args: ['2'], killAfterMs: 20000 });
    const result = await child.exited;

    assert.equal(result.killed, false, `still running after 20 s, killed. stderr: ${result.stderr}`);
    assert.equal(result.signal, null, `ended by ${result.signal}. stderr: ${result.stderr}`);
    assert.equal(result.code, 0, `exit code ${result.code}. stderr: ${result.stderr}`);
    assert.doesNotMatch(result.stderr, CRASH_PATTERN);
    const sent = child.lines.filter(l => l.text.startsWith('SENT '));
    assert.equal(sent.length, 2, result.stdout);
    const lingered = result.at - sent.at(-1).at;
    assert.ok(lingered < 5000, `the process lingered ${lingered} ms after its last send`);
    assert.equal(env.smtp.messages.length, 2);
    await waitFor(() => quits.length === 1, { timeoutMs: 5000, label: 'the QUIT of the idle pooled connection' });
    assert.equal(env.smtp.connections.length, 1, 'the two messages shared one pooled connection');
});

test("20 pooled transports created and closed leave no 'exit' listener behind; unclosed ones share one listener", T, async () => {
    const config = {
        host: '127.0.0.1',
        port: 1,
        pool: true,
        auth: { user: 'sender@example.com', pass: 'x' }
    };
    const before = process.listenerCount('exit');
    for (let i = 0; i < 20; i++) {
        await createTransport(config).close();
    }
    assert.equal(process.listenerCount('exit'), before);

    const open = Array.from({ length: 20 }, () => createTransport(config));
    assert.equal(process.listenerCount('exit'), before + 1, 'one listener for all unclosed pooled transports');
    await Promise.all(open.map(transport => transport.close()));
    assert.equal(process.listenerCount('exit'), before);
    // A transport without pool needs none.
    createTransport({ ...config, pool: false });
    assert.equal(process.listenerCount('exit'), before);
});
