// Runs support/child-send.cjs in a separate node process and records what it does.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

export const CHILD_SCRIPT = fileURLToPath(new URL('./child-send.cjs', import.meta.url));

/**
 * @param {string} mode          'cron' | 'cron-exit' | 'gc' | 'inflight' (see child-send.cjs)
 * @param {object} config        config.mail.smtp for the child
 * @param {object} [opts]
 * @param {string[]} [opts.args]      after the mode, e.g. a message count for 'cron'
 * @param {string[]} [opts.nodeArgs]  e.g. ['--expose-gc']
 * @param {number} [opts.killAfterMs] SIGKILL the child if it is still running (default 15000)
 * @returns {{
 *   proc: import('node:child_process').ChildProcess,
 *   lines: Array<{ text: string, at: number }>,
 *   waitForLine: (re: RegExp) => Promise<{ text: string, at: number }>,
 *   exited: Promise<{ code: number|null, signal: string|null, stdout: string, stderr: string, at: number, killed: boolean }>
 * }}
 */
export function runChild(mode, config, { args = [], nodeArgs = [], killAfterMs = 15000 } = {}) {
    const proc = spawn(process.execPath, [...nodeArgs, CHILD_SCRIPT, mode, ...args], {
        env: { ...process.env, SMTP_OAUTH_TEST_CONFIG: JSON.stringify(config), RUST_BACKTRACE: '1' },
        stdio: ['pipe', 'pipe', 'pipe']
    });
    let stdout = '';
    let stderr = '';
    let partial = '';
    const lines = [];
    const waiters = [];
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stdout.on('data', chunk => {
        stdout += chunk;
        partial += chunk;
        let nl;
        while ((nl = partial.indexOf('\n')) >= 0) {
            const line = { text: partial.slice(0, nl), at: Date.now() };
            partial = partial.slice(nl + 1);
            lines.push(line);
            for (const w of waiters.filter(w => w.re.test(line.text))) {
                waiters.splice(waiters.indexOf(w), 1);
                w.resolve(line);
            }
        }
    });
    proc.stderr.on('data', chunk => {
        stderr += chunk;
    });
    // The child may be gone before we write to its stdin.
    proc.stdin.on('error', () => {});

    let killed = false;
    const guard = setTimeout(() => {
        killed = true;
        proc.kill('SIGKILL');
    }, killAfterMs);

    const exited = new Promise(resolve => {
        proc.on('close', (code, signal) => {
            clearTimeout(guard);
            const result = { code, signal, stdout, stderr, at: Date.now(), killed };
            for (const w of waiters.splice(0)) {
                w.reject(new Error(`child exited (code ${code}, signal ${signal}) before printing ${w.re}; stderr: ${stderr}`));
            }
            resolve(result);
        });
    });

    return {
        proc,
        lines,
        exited,
        waitForLine(re) {
            const found = lines.find(l => re.test(l.text));
            if (found) {
                return Promise.resolve(found);
            }
            return new Promise((resolve, reject) => waiters.push({ re, resolve, reject }));
        }
    };
}

/** Signs of a native crash (Rust panic, abort, segfault) in a child's stderr. */
export const CRASH_PATTERN = /panick|panic|abort|SIGABRT|Segmentation fault|FATAL ERROR|core dumped/i;

/**
 * Runs a cron-style child (`mode` 'cron' or 'cron-exit') that sends `count` messages through a
 * pooled transport and never closes it, and checks that it ended by itself: not killed, no
 * signal, exit code 0, no crash, `count` sends, and no lingering after the last one (under 5 s).
 * Resolves `{ result, sent }`: the child's result and its `SENT` lines.
 */
export async function runCronChild(mode, config, count) {
    const child = runChild(mode, config, { args: [String(count)], killAfterMs: 20000 });
    const result = await child.exited;
    assert.equal(result.killed, false, `still running after 20 s, killed. stderr: ${result.stderr}`);
    assert.equal(result.signal, null, `ended by ${result.signal}. stderr: ${result.stderr}`);
    assert.equal(result.code, 0, `exit code ${result.code}. stderr: ${result.stderr}`);
    assert.doesNotMatch(result.stderr, CRASH_PATTERN);
    const sent = child.lines.filter(l => l.text.startsWith('SENT '));
    assert.equal(sent.length, count, result.stdout);
    const lingered = result.at - sent.at(-1).at;
    assert.ok(lingered < 5000, `the process lingered ${lingered} ms after its last send`);
    return { result, sent };
}

/**
 * The times of the QUIT commands smtp-server receives during test `t` (it has no command
 * hook, so its dispatcher is wrapped, and restored after the test).
 */
export function recordQuits(t) {
    const quits = [];
    const onCommand = SMTPConnection.prototype._onCommand;
    SMTPConnection.prototype._onCommand = function (command, callback) {
        if (/^QUIT\b/i.test(command.toString())) quits.push(Date.now());
        return onCommand.call(this, command, callback);
    };
    t.after(() => {
        SMTPConnection.prototype._onCommand = onCommand;
    });
    return quits;
}
