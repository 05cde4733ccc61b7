// Runs inside a private network and mount namespace (see smtp-network.test.mjs), where
// /etc/hosts makes smtp.example.test resolve to ::1 and 127.0.0.1, in that order (the system
// resolver puts IPv6 first, as for smtp.office365.com). The SMTP server listens on
// 127.0.0.1:PORT; [::1]:PORT is black-holed: a listening socket in a process whose event loop
// is blocked (so it never accepts) with its accept queue full, so Linux drops further SYNs and
// connects hang, as over a broken IPv6 route. Sends through the public API and prints one JSON
// line: the outcome, how long the send took, the same send straight to 127.0.0.1 (after a
// warm-up send) for comparison, whether a plain connect to [::1]:PORT hangs (the premise), and the log.
// Then `dnsTimeout`: /etc/resolv.conf names 127.0.0.1, where a UDP socket takes queries and never
// answers, so the lookup of a name that /etc/hosts lacks hangs.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { captureLogger } from './canary.mjs';
import { loadTransport, TEST_USER } from './config.mjs';
import { startEnv } from './env.mjs';

const { createTransport } = loadTransport();
const mail = subject => ({ from: TEST_USER, to: 'rcpt@example.com', subject, text: subject });

// Listens with backlog 1, says so, then blocks its event loop for good: nothing is accepted.
const BLACK_HOLE = `
const server = require('node:net').createServer();
server.listen({ host: '::1', port: Number(process.argv[1]), backlog: 1 }, () => {
    process.stdout.write('listening\\n', () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0));
});`;

/** 'hangs' if a connect to `host:port` neither succeeds nor fails within `ms`. */
function probe(host, port, ms) {
    return new Promise(resolve => {
        const socket = net.connect({ host, port });
        const timer = setTimeout(() => {
            socket.destroy();
            resolve('hangs');
        }, ms);
        socket.on('connect', () => {
            clearTimeout(timer);
            socket.destroy();
            resolve('connected');
        });
        socket.on('error', err => {
            clearTimeout(timer);
            resolve(err.code);
        });
    });
}

async function timedSend(config, subject) {
    const log = captureLogger();
    const transport = createTransport({ ...config, debug: true, logger: log.logger });
    const started = Date.now();
    let outcome;
    try {
        const info = await transport.sendMail(mail(subject));
        outcome = { ok: true, accepted: info.accepted };
    } catch (err) {
        outcome = { ok: false, code: err.code, message: err.message };
    }
    outcome.ms = Date.now() - started;
    await transport.close();
    await log.settle();
    outcome.log = log.text();
    return outcome;
}

const env = await startEnv();
const port = env.smtp.port;
const hole = spawn(process.execPath, ['-e', BLACK_HOLE, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
await once(hole.stdout, 'data');
const fillers = [0, 1, 2].map(() => net.connect({ host: '::1', port }).on('error', () => {}));
await new Promise(resolve => setTimeout(resolve, 200));

const result = { port };
result.probe = await probe('::1', port, 1000);
const config = env.config({ connectionTimeout: 10000, maxRetries: 0 });
await timedSend(config, 'warm-up'); // the first send also pays for loading and JIT
result.direct = await timedSend(config, 'straight to 127.0.0.1');
result.dualStack = await timedSend({ ...config, host: 'smtp.example.test' }, 'to smtp.example.test');
result.remoteAddress = env.smtp.connections.at(-1).remoteAddress;

const silentDns = dgram.createSocket('udp4');
await new Promise(resolve => silentDns.bind(53, '127.0.0.1', resolve));
result.slowDns = await timedSend({ ...config, host: 'unlisted.example.test', dnsTimeout: 500 }, 'slow DNS');
silentDns.close();
process.stdout.write(`${JSON.stringify(result)}\n`);

for (const socket of fillers) {
    socket.destroy();
}
hole.kill('SIGKILL');
await env.close();
