// Debian's Postfix as a throwaway loopback server (for __test__/postfix.test.mjs and the
// DATA/BDAT benchmark): its own main.cf/master.cf in a temp dir, one smtpd listener per
// entry of `listeners` (name -> extra `-o` options), mail delivered to the discard
// transport, the log (maillog_file = /dev/stdout of the master) in a file. Needs root.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { waitFor } from './wait.mjs';

async function freePort() {
    const server = net.createServer();
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address();
    await new Promise(resolve => server.close(resolve));
    return port;
}

const service = (...columns) => columns.join(' ');

/**
 * @param {Record<string, string>} listeners  e.g. { full: '', bare: '-o smtputf8_enable=no' };
 *        `{dir}` in the options is the config directory
 * @param {{ files?: Record<string, string> }} [opts]  files written to the config directory
 *        first (certificates, keys), mode 0600
 * @returns {Promise<{ ports: Record<string, number>, log: () => string, stop: () => Promise<void> }>}
 */
export async function startPostfix(listeners, { files = {} } = {}) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postfix-test-'));
    fs.chmodSync(dir, 0o755); // the mail owner must reach data/
    fs.mkdirSync(path.join(dir, 'queue'));
    fs.mkdirSync(path.join(dir, 'data'));
    for (const [name, content] of Object.entries(files)) {
        fs.writeFileSync(path.join(dir, name), content, { mode: 0o600 });
    }
    // The master writes its lock file there as the mail owner.
    spawnSync('chown', ['postfix', path.join(dir, 'data')]);
    const ports = {};
    for (const name of Object.keys(listeners)) {
        ports[name] = await freePort();
    }
    fs.writeFileSync(
        path.join(dir, 'main.cf'),
        [
            'compatibility_level = 3.6',
            `queue_directory = ${dir}/queue`,
            `data_directory = ${dir}/data`,
            'mail_owner = postfix',
            'setgid_group = postdrop',
            'inet_interfaces = 127.0.0.1',
            'inet_protocols = ipv4',
            'myhostname = postfix.localhost',
            'mydestination =',
            'mynetworks = 127.0.0.0/8',
            'smtpd_relay_restrictions = permit_mynetworks, reject',
            'default_transport = discard:',
            'relay_transport = discard:',
            'local_transport = discard:',
            'alias_maps =',
            'alias_database =',
            'maillog_file = /dev/stdout',
            'smtputf8_enable = yes',
            'message_size_limit = 104857600',
            ''
        ].join('\n')
    );
    fs.writeFileSync(
        path.join(dir, 'master.cf'),
        [
            ...Object.entries(listeners).map(([name, options]) =>
                service(`127.0.0.1:${ports[name]}`, 'inet', 'n', '-', 'n', '-', '-', `smtpd ${options.replaceAll('{dir}', dir)}`.trim())
            ),
            service('pickup', 'unix', 'n', '-', 'n', '60', '1', 'pickup'),
            service('cleanup', 'unix', 'n', '-', 'n', '-', '0', 'cleanup'),
            service('qmgr', 'unix', 'n', '-', 'n', '300', '1', 'qmgr'),
            service('rewrite', 'unix', '-', '-', 'n', '-', '-', 'trivial-rewrite'),
            service('bounce', 'unix', '-', '-', 'n', '-', '0', 'bounce'),
            service('defer', 'unix', '-', '-', 'n', '-', '0', 'bounce'),
            service('trace', 'unix', '-', '-', 'n', '-', '0', 'bounce'),
            service('verify', 'unix', '-', '-', 'n', '-', '1', 'verify'),
            service('proxymap', 'unix', '-', '-', 'n', '-', '-', 'proxymap'),
            service('showq', 'unix', 'n', '-', 'n', '-', '-', 'showq'),
            service('error', 'unix', '-', '-', 'n', '-', '-', 'error'),
            service('retry', 'unix', '-', '-', 'n', '-', '-', 'error'),
            service('discard', 'unix', '-', '-', 'n', '-', '-', 'discard'),
            service('anvil', 'unix', '-', '-', 'n', '-', '1', 'anvil'),
            service('scache', 'unix', '-', '-', 'n', '-', '1', 'scache'),
            service('postlog', 'unix-dgram', 'n', '-', 'n', '-', '1', 'postlogd'),
            service('tlsmgr', 'unix', '-', '-', 'n', '1000?', '1', 'tlsmgr'),
            ''
        ].join('\n')
    );
    // A file, not a pipe: Postfix's daemons reopen /dev/stdout of the master.
    const logPath = path.join(dir, 'maillog');
    const logFd = fs.openSync(logPath, 'a');
    const master = spawn('postfix', ['-c', dir, 'start-fg'], { stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
    const log = () => fs.readFileSync(logPath, 'utf8');
    const exited = new Promise(resolve => master.once('exit', resolve));
    master.once('error', () => {}); // no postfix binary: reported below
    await waitFor(() => log().includes('daemon started') || master.exitCode !== null || master.pid === undefined, {
        timeoutMs: 15000,
        label: 'postfix to start'
    });
    if (!log().includes('daemon started')) {
        fs.rmSync(dir, { recursive: true, force: true });
        throw new Error(`postfix did not start (apt-get install postfix; run as root):\n${log()}`);
    }
    return {
        ports,
        log,
        async stop() {
            spawnSync('postfix', ['-c', dir, 'stop']);
            await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 5000))]);
            master.kill('SIGKILL');
            fs.rmSync(dir, { recursive: true, force: true });
        }
    };
}
