// Runs support/child-secretless.cjs with the environment a platform would give it (Azure
// Workload Identity's AZURE_* variables, App Service's or Arc's IDENTITY_ENDPOINT...).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CHILD_SCRIPT = fileURLToPath(new URL('./child-secretless.cjs', import.meta.url));

/** Variables a platform sets, removed from the inherited environment unless given. */
const PLATFORM_VARIABLES = [
    'AZURE_FEDERATED_TOKEN_FILE',
    'AZURE_CLIENT_ID',
    'AZURE_TENANT_ID',
    'AZURE_AUTHORITY_HOST',
    'IDENTITY_ENDPOINT',
    'IDENTITY_HEADER',
    'IMDS_ENDPOINT'
];

/**
 * @param {string} mode     'send' | 'callback' (see child-secretless.cjs)
 * @param {object} config   config.mail.smtp for the child
 * @param {object} [opts]
 * @param {Record<string,string>} [opts.env]  platform variables for the child
 * @param {string} [opts.shellSetup]  run as `unshare -m -- sh -c '<shellSetup>; exec node ...'`
 *        (a private mount namespace, e.g. to place the Azure Arc challenge file)
 * @param {number} [opts.killAfterMs]
 * @returns {Promise<{ code: number|null, signal: string|null, killed: boolean, stdout: string, stderr: string, lines: string[] }>}
 */
export function runSecretlessChild(mode, config, { env = {}, shellSetup, killAfterMs = 15000 } = {}) {
    const childEnv = { ...process.env, SMTP_OAUTH_TEST_CONFIG: JSON.stringify(config), RUST_BACKTRACE: '1' };
    for (const name of PLATFORM_VARIABLES) {
        delete childEnv[name];
    }
    Object.assign(childEnv, env);
    const [command, args] = shellSetup
        ? ['unshare', ['-m', '--', 'sh', '-c', `${shellSetup} && exec "$0" "$1" "$2"`, process.execPath, CHILD_SCRIPT, mode]]
        : [process.execPath, [CHILD_SCRIPT, mode]];
    const proc = spawn(command, args, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', chunk => (stdout += chunk));
    proc.stderr.setEncoding('utf8').on('data', chunk => (stderr += chunk));
    let killed = false;
    const guard = setTimeout(() => {
        killed = true;
        proc.kill('SIGKILL');
    }, killAfterMs);
    return new Promise(resolve => {
        proc.on('close', (code, signal) => {
            clearTimeout(guard);
            resolve({ code, signal, killed, stdout, stderr, lines: stdout.split('\n').filter(Boolean) });
        });
    });
}

/** The JSON printed after `prefix` (`CREDENTIAL `, `ERROR `) by the child, if any. */
export function printed(result, prefix) {
    const line = result.lines.find(l => l.startsWith(prefix));
    return line === undefined ? undefined : JSON.parse(line.slice(prefix.length));
}
