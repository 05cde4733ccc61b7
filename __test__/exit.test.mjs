// Process exit with pooled connections: QUIT is said when the process ends naturally or
// through process.exit() (which runs no event loop and no native cleanup hooks), at once
// and without a hang; the 'exit' listener that does it goes away with close().
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { recordQuits, runCronChild } from './support/child.mjs';
import { loadTransport } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { waitFor } from './support/wait.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 30000 };

test('a cron-style script with pool: true ending with process.exit(0) right after its last send exits at once with code 0, and the idle pooled connection is sent QUIT', T, async t => {
    const env = await startEnv();
    t.after(() => env.close());
    const quits = recordQuits(t);
    await runCronChild('cron-exit', env.config({ pool: true }), 2);
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
