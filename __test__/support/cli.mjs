// The CLI (bin/smtp-oauth-transport.js) run as a child process, the way an administrator
// runs it, and readers of its text output.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../bin/smtp-oauth-transport.js', import.meta.url));

/** The parent's environment without anything that could point the CLI at real settings. */
function cleanEnv(extra = {}) {
    const env = {};
    for (const [key, value] of Object.entries(process.env)) {
        if (!/^TAS_|^NODE_EXTRA_CA_CERTS$|^NAPI_RS_|PROXY$/i.test(key)) {
            env[key] = value;
        }
    }
    return { ...env, ...extra };
}

/** Runs the CLI; resolves { code, stdout, stderr }. */
export function runCli(args, { env = {}, timeoutMs = 30000 } = {}) {
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [CLI, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', d => (stdout += d));
        child.stderr.setEncoding('utf8').on('data', d => (stderr += d));
        const timer = setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`the CLI did not finish within ${timeoutMs} ms; stdout so far:\n${stdout}\nstderr:\n${stderr}`));
        }, timeoutMs);
        child.on('error', reject);
        child.on('close', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, stdout, stderr });
        });
    });
}

/** { 1: '✔', 2: '✘', ... } from the doctor's text output, plus the whole line of each step. */
export function stepMarks(stdout) {
    const marks = {};
    const lines = {};
    for (const line of stdout.split('\n')) {
        const match = /^([✔✘–]) (\d)\. /.exec(line);
        if (match) {
            marks[match[2]] = match[1];
            lines[match[2]] = line;
        }
    }
    return { marks, lines };
}
