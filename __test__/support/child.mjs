// Runs support/child-send.cjs in a separate node process and records what it does.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

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
