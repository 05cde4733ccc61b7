#!/usr/bin/env node
// `npm run bench`: this package against nodemailer (pool, OAuth2 with provisionCallback) and a
// minimal pipelined Rust client (crates/bench-client, the ceiling), on one SMTP sink run as a
// separate process (bench/sink.mjs). Not part of `npm test`.
//
// Measured, each client in a fresh node process of its own (this file, `--worker ...`):
//   throughput   2,000 messages of ~2 KB (text + html), maxConnections 3, messages/s; the token
//                requests they cost; event-loop delay p50/p99 while sending and an idle baseline
//   big          one message with a 25 MB attachment: time, the longest event-loop stall, peak
//                RSS growth (sampled every 5 ms, and the kernel's high-water mark VmHWM)
//   cold         createTransport -> first info (token + connect + TLS + AUTH + DATA)
// Prints the machine, a table and whether the targets are met; writes bench/results.json.
//
// Options: --rounds N (throughput rounds per client, median reported; default 3), --count N
// (default 2000), --no-build (use the addon and bench client as they are).
import { execFileSync, fork, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const require = createRequire(import.meta.url);
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

const BIG_ATTACHMENT = 25 * 1024 * 1024;
const MAX_CONNECTIONS = 3;

// ~2 KB once built: a text and an html part (quoted-printable, some non-ASCII).
const TEXT = [
    'Dobrý den,',
    '',
    'this is a benchmark message of about two kilobytes, the size of a typical notification:',
    'a greeting, a few lines of text, a link and a signature. Nothing in it is special, which',
    'is the point: it measures the transport, not the message builder’s corner cases.',
    '',
    'Order 2026-000123 has shipped. Track it at https://example.com/track/2026-000123',
    'Delivery is expected within three working days; the carrier will send a text message on the',
    'morning of the delivery. If nobody is at home, the parcel waits at the nearest pick-up point',
    'for seven days. Reply to this message if anything is wrong with the order.',
    'Položky: 3 × widget, 1 × gadget. Celkem: 1 234,50 Kč.',
    '',
    'S pozdravem,',
    'the benchmark'
].join('\n');
const HTML = `<!doctype html><html><body style="font-family:sans-serif">
<p>Dobrý den,</p>
<p>this is a benchmark message of about two kilobytes, the size of a typical notification:
a greeting, a few lines of text, a link and a signature.</p>
<table><tr><th>Položka</th><th>Počet</th></tr><tr><td>widget</td><td>3</td></tr><tr><td>gadget</td><td>1</td></tr></table>
<p>Order <b>2026-000123</b> has shipped. <a href="https://example.com/track/2026-000123">Track it</a>.</p>
<p>Delivery is expected within three working days; the carrier will send a text message on the morning of the
delivery. If nobody is at home, the parcel waits at the nearest pick-up point for seven days.</p>
<p>S pozdravem,<br>the benchmark</p></body></html>`;

function benchMessage(sink, i) {
    return {
        from: `Bench <${sink.user}>`,
        to: 'rcpt@example.com',
        subject: `Benchmark message ${i} – objednávka odeslána`,
        text: TEXT,
        html: HTML
    };
}

// ---------------------------------------------------------------- worker (one client, one scenario)

async function fetchToken(sink) {
    const response = await fetch(sink.tokenUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
            grant_type: 'client_credentials',
            client_id: sink.clientId,
            client_secret: sink.clientSecret,
            scope: sink.scope
        })
    });
    const body = await response.json();
    if (!response.ok) {
        throw new Error(`token endpoint: ${response.status} ${JSON.stringify(body)}`);
    }
    return { accessToken: body.access_token, expires: Date.now() + body.expires_in * 1000 };
}

/** A client: `send(message)` resolves with info; `close()`. `cold` skips any token prefetch. */
async function makeClient(kind, sink, { cold = false } = {}) {
    if (kind === 'ours' || kind === 'ours-unlimited') {
        const { createTransport } = require(path.join(ROOT, 'transport.js'));
        const transport = createTransport({
            type: 'oauth2',
            host: '127.0.0.1',
            port: sink.smtpPort,
            auth: { user: sink.user },
            tls: { ca: sink.caPem, servername: 'localhost' },
            oauth2: { host: sink.tokenUrl, clientId: sink.clientId, clientSecret: sink.clientSecret, scope: sink.scope },
            pool: true,
            maxConnections: MAX_CONNECTIONS,
            // ('ours-unlimited': no connection replacement, 3 connections like the minimal client.)
            ...(kind === 'ours-unlimited' ? { maxMessages: 1000000 } : {})
        });
        return { send: m => transport.sendMail(m), close: () => transport.close() };
    }
    const nodemailer = require('nodemailer');
    // The usual nodemailer setup for client_credentials: a token from the endpoint, renewed
    // through provisionCallback whenever nodemailer asks for one.
    // ('nodemailer-provision': no initial token, every token comes from provisionCallback.)
    const initial = cold || kind === 'nodemailer-provision' ? {} : await fetchToken(sink);
    const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port: sink.smtpPort,
        secure: false,
        requireTLS: true,
        tls: { ca: sink.caPem, servername: 'localhost' },
        pool: true,
        maxConnections: MAX_CONNECTIONS,
        auth: {
            type: 'OAuth2',
            user: sink.user,
            ...initial,
            provisionCallback: (user, renew, callback) => {
                fetchToken(sink).then(
                    token => callback(null, token.accessToken, token.expires),
                    err => callback(err)
                );
            }
        }
    });
    return {
        send: m => transport.sendMail(m),
        close: async () => transport.close()
    };
}

function histogramMs(h) {
    const ms = ns => Math.round((ns / 1e6) * 1000) / 1000;
    return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), mean: ms(h.mean), samples: h.count };
}

async function eventLoopWhile(work) {
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    try {
        const value = await work();
        return { value, delay: h };
    } finally {
        h.disable();
    }
}

function vmHwmBytes() {
    try {
        const match = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
        return match ? Number(match[1]) * 1024 : null;
    } catch {
        return null;
    }
}

function resetVmHwm() {
    try {
        fs.writeFileSync('/proc/self/clear_refs', '5');
        return true;
    } catch {
        return false;
    }
}

async function worker(kind, scenario) {
    const { sink, count } = JSON.parse(process.env.BENCH_WORKER);
    const result = { kind, scenario };

    if (scenario === 'cold') {
        const loadStart = performance.now();
        if (kind === 'ours') {
            require(path.join(ROOT, 'transport.js'));
        } else {
            require('nodemailer');
        }
        result.requireMs = performance.now() - loadStart;
        const started = performance.now();
        const client = await makeClient(kind, sink, { cold: true });
        const info = await client.send(benchMessage(sink, 0));
        result.coldMs = performance.now() - started;
        result.messageId = info.messageId;
        await client.close();
    } else if (scenario === 'throughput') {
        const client = await makeClient(kind, sink);
        // The idle baseline: the same monitor, nothing to do.
        const idle = await eventLoopWhile(() => sleep(2000));
        result.idleLoop = histogramMs(idle.delay);
        const messages = Array.from({ length: count }, (_, i) => benchMessage(sink, i + 1));
        const started = performance.now();
        const sending = await eventLoopWhile(() => Promise.all(messages.map(m => client.send(m))));
        const elapsed = performance.now() - started;
        result.messages = sending.value.length;
        result.elapsedMs = elapsed;
        result.perSecond = (count / elapsed) * 1000;
        result.sendingLoop = histogramMs(sending.delay);
        await client.close();
    } else if (scenario === 'big') {
        const client = await makeClient(kind, sink);
        await client.send(benchMessage(sink, 0)); // connection, TLS and AUTH out of the way
        const content = crypto.randomBytes(BIG_ATTACHMENT);
        const message = { ...benchMessage(sink, 1), attachments: [{ filename: 'big.bin', content }] };
        if (global.gc) {
            global.gc();
        }
        await sleep(200);
        const baseline = process.memoryUsage.rss();
        const hwmReset = resetVmHwm();
        let peak = baseline;
        const sampler = setInterval(() => {
            peak = Math.max(peak, process.memoryUsage.rss());
        }, 5);
        // The longest gap between 1 ms timer ticks, besides the histogram.
        let last = performance.now();
        let longestGap = 0;
        const ticker = setInterval(() => {
            const now = performance.now();
            longestGap = Math.max(longestGap, now - last);
            last = now;
        }, 1);
        const started = performance.now();
        const sending = await eventLoopWhile(() => client.send(message));
        result.elapsedMs = performance.now() - started;
        clearInterval(sampler);
        clearInterval(ticker);
        peak = Math.max(peak, process.memoryUsage.rss());
        const hwm = hwmReset ? vmHwmBytes() : null;
        result.loop = histogramMs(sending.delay);
        result.longestTickGapMs = Math.round(longestGap * 1000) / 1000;
        result.rssBaseline = baseline;
        result.rssGrowthSampled = peak - baseline;
        result.rssGrowthHwm = hwm === null ? null : hwm - baseline;
        result.attachmentBytes = BIG_ATTACHMENT;
        await client.close();
    } else {
        throw new Error(`unknown scenario ${scenario}`);
    }
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------- orchestrator

function machine() {
    let cpu = os.cpus()[0]?.model || 'unknown';
    try {
        const match = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
        if (match) {
            cpu = match[1].trim();
        }
    } catch {
        // not Linux
    }
    return {
        cpu,
        cores: os.cpus().length,
        node: process.version,
        platform: `${os.platform()} ${os.release()} ${os.arch()}`,
        memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
        nodemailer: require('nodemailer/package.json').version,
        package: require(path.join(ROOT, 'package.json')).version
    };
}

function newestMtime(dir, filter) {
    let newest = 0;
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) {
            newest = Math.max(newest, newestMtime(full, filter));
        } else if (filter(entry.name)) {
            newest = Math.max(newest, fs.statSync(full).mtimeMs);
        }
    }
    return newest;
}

/** Why the release addon must be (re)built, or null. */
function addonStale() {
    const addon = fs.readdirSync(ROOT).find(f => /^smtp-oauth-transport\..*\.node$/.test(f));
    if (!addon) {
        return 'no addon built yet';
    }
    const stat = fs.statSync(path.join(ROOT, addon));
    // A debug build is ~80 MB with symbols; the stripped release build a few MB.
    if (stat.size > 30 * 1024 * 1024) {
        return `${addon} is a debug build (${Math.round(stat.size / 2 ** 20)} MB)`;
    }
    const sources = Math.max(
        newestMtime(path.join(ROOT, 'src'), f => f.endsWith('.rs')),
        newestMtime(path.join(ROOT, 'crates', 'core'), f => f.endsWith('.rs') || f === 'Cargo.toml'),
        fs.statSync(path.join(ROOT, 'Cargo.toml')).mtimeMs,
        fs.statSync(path.join(ROOT, 'Cargo.lock')).mtimeMs
    );
    return sources > stat.mtimeMs ? `${addon} is older than the Rust sources` : null;
}

function build(noBuild) {
    const stale = addonStale();
    if (stale && !noBuild) {
        console.log(`# building the release addon (${stale}): npm run build`);
        execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    } else if (stale) {
        console.log(`# warning: ${stale} (--no-build given)`);
    }
    const client = path.join(ROOT, 'target', 'release', 'bench-client');
    if (!noBuild) {
        console.log('# building the minimal client: cargo build --release -p bench-client');
        execFileSync('cargo', ['build', '--release', '-p', 'bench-client'], { cwd: ROOT, stdio: 'inherit' });
    }
    if (!fs.existsSync(client)) {
        throw new Error(`${client} is missing: run cargo build --release -p bench-client`);
    }
    return client;
}

function startSink() {
    const child = fork(path.join(ROOT, 'bench', 'sink.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const waiters = new Map();
    child.on('message', message => {
        const waiter = waiters.get(message.type);
        if (waiter) {
            waiters.delete(message.type);
            waiter(message);
        }
    });
    const next = type => new Promise(resolve => waiters.set(type, resolve));
    const ready = next('ready');
    return ready.then(info => ({
        info,
        async stats() {
            const reply = next('stats');
            child.send({ cmd: 'stats' });
            return reply;
        },
        async reset() {
            const reply = next('reset');
            child.send({ cmd: 'reset' });
            return reply;
        },
        close() {
            return new Promise(resolve => {
                const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
                child.once('exit', () => {
                    clearTimeout(timer);
                    resolve();
                });
                child.send({ cmd: 'close' });
            });
        }
    }));
}

function run(command, args, { env = {}, timeoutMs = 180000 } = {}) {
    return new Promise((resolve, reject) => {
        const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', chunk => (stdout += chunk));
        child.stderr.on('data', chunk => (stderr += chunk));
        const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        child.on('close', code => {
            clearTimeout(timer);
            if (code !== 0) {
                return reject(new Error(`${path.basename(command)} ${args.join(' ')} exited ${code}: ${stderr || stdout}`));
            }
            resolve({ stdout, stderr });
        });
    });
}

async function runWorker(sink, kind, scenario, count) {
    await sink.reset();
    const { stdout } = await run(process.execPath, ['--expose-gc', SELF, '--worker', kind, scenario], {
        env: { BENCH_WORKER: JSON.stringify({ sink: sink.info, count }) }
    });
    const line = stdout.split('\n').find(l => l.startsWith('RESULT '));
    if (!line) {
        throw new Error(`${kind} ${scenario}: no result: ${stdout}`);
    }
    const result = JSON.parse(line.slice('RESULT '.length));
    const stats = await sink.stats();
    result.tokenRequests = stats.tokenRequests;
    result.delivered = stats.messages;
    result.connections = stats.connections;
    result.authFailures = stats.authFailures;
    return result;
}

async function runMinimal(sink, clientPath, messageFile, count) {
    await sink.reset();
    const { accessToken } = await fetchToken(sink.info);
    const { stdout } = await run(clientPath, [
        '--port', String(sink.info.smtpPort),
        '--ca', sink.info.caFile,
        '--user', sink.info.user,
        '--token', accessToken,
        '--message', messageFile,
        '--count', String(count),
        '--connections', String(MAX_CONNECTIONS)
    ]);
    const result = JSON.parse(stdout.trim().split('\n').pop());
    const stats = await sink.stats();
    return { kind: 'minimal', scenario: 'throughput', ...result, tokenRequests: stats.tokenRequests, delivered: stats.messages, connections: stats.connections };
}

const median = values => {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const round = (n, digits = 1) => (n === null || n === undefined ? null : Math.round(n * 10 ** digits) / 10 ** digits);
const mib = bytes => (bytes === null ? null : round(bytes / 2 ** 20, 1));

async function buildMessageFile(sink) {
    const MailComposer = require('nodemailer/lib/mail-composer');
    const mail = new MailComposer({ ...benchMessage(sink, 1), messageId: '<bench-minimal@example.com>' }).compile();
    const raw = await new Promise((resolve, reject) => mail.build((err, buf) => (err ? reject(err) : resolve(buf))));
    const file = path.join(path.dirname(sink.caFile), 'message.eml');
    fs.writeFileSync(file, raw);
    return { file, bytes: raw.length };
}

function table(rows) {
    const widths = rows[0].map((_, c) => Math.max(...rows.map(r => String(r[c]).length)));
    const line = r => '| ' + r.map((cell, c) => String(cell).padEnd(widths[c])).join(' | ') + ' |';
    return [line(rows[0]), '|' + widths.map(w => '-'.repeat(w + 2)).join('|') + '|', ...rows.slice(1).map(line)].join('\n');
}

async function main() {
    const args = process.argv.slice(2);
    const option = (name, fallback) => {
        const i = args.indexOf(name);
        return i >= 0 ? Number(args[i + 1]) : fallback;
    };
    const rounds = option('--rounds', 3);
    const count = option('--count', 2000);
    const info = machine();
    console.log(`# machine: ${info.cpu}, ${info.cores} cores, ${info.memoryGiB} GiB, node ${info.node}, ${info.platform}`);
    console.log(`# nodemailer ${info.nodemailer}, smtp-oauth-transport ${info.package}`);
    if (info.cores <= 2) {
        console.log(`# note: ${info.cores} cores; the sink (a JS process) and the client under test compete for them.`);
    }
    const clientPath = build(args.includes('--no-build'));

    const sink = await startSink();
    const results = { machine: info, date: new Date().toISOString(), count, rounds, maxConnections: MAX_CONNECTIONS, runs: [] };
    try {
        const sinkInfo = sink.info;
        const message = await buildMessageFile(sinkInfo);
        results.messageBytes = message.bytes;
        console.log(`# sink pid ${sinkInfo.smtpPort ? 'ready' : '?'} on 127.0.0.1:${sinkInfo.smtpPort}; message ~${message.bytes} bytes; ${count} messages x ${rounds} rounds`);

        const record = r => {
            results.runs.push(r);
            const parts = [`${r.kind.padEnd(10)} ${r.scenario.padEnd(10)}`];
            if (r.perSecond) parts.push(`${round(r.perSecond)} msg/s`);
            if (r.scenario === 'big') parts.push(`${round(r.elapsedMs)} ms, max stall ${r.loop.max} ms, rss +${mib(r.rssGrowthHwm ?? r.rssGrowthSampled)} MiB`);
            if (r.scenario === 'cold') parts.push(`${round(r.coldMs)} ms`);
            parts.push(`tokens ${r.tokenRequests}, delivered ${r.delivered}, connections ${r.connections}`);
            console.log(`  ${parts.join(', ')}`);
            return r;
        };

        for (let i = 0; i < rounds; i++) {
            record(await runWorker(sink, 'ours', 'throughput', count));
            record(await runWorker(sink, 'nodemailer', 'throughput', count));
            record(await runMinimal(sink, clientPath, message.file, count));
        }
        // The same nodemailer setup without an initial accessToken: each pooled connection
        // asks provisionCallback for its own token (one round; for the token count).
        record(await runWorker(sink, 'nodemailer-provision', 'throughput', count));
        // This package without maxMessages replacing connections (the minimal client keeps its 3).
        record(await runWorker(sink, 'ours-unlimited', 'throughput', count));
        for (const kind of ['ours', 'nodemailer']) {
            record(await runWorker(sink, kind, 'big', count));
        }
        for (let i = 0; i < rounds; i++) {
            for (const kind of ['ours', 'nodemailer']) {
                record(await runWorker(sink, kind, 'cold', count));
            }
        }
    } finally {
        await sink.close();
    }

    // ---- summary
    const of = (kind, scenario) => results.runs.filter(r => r.kind === kind && r.scenario === scenario);
    const summary = {};
    for (const kind of ['ours', 'nodemailer', 'minimal', 'nodemailer-provision', 'ours-unlimited']) {
        const tp = of(kind, 'throughput');
        const big = of(kind, 'big')[0];
        const cold = of(kind, 'cold');
        summary[kind] = {
            perSecond: round(median(tp.map(r => r.perSecond))),
            perSecondAll: tp.map(r => round(r.perSecond)),
            tokenRequests: tp.map(r => r.tokenRequests),
            delivered: tp.map(r => r.delivered),
            connections: tp.map(r => r.connections),
            loopP50: tp[0]?.sendingLoop ? round(median(tp.map(r => r.sendingLoop.p50)), 3) : null,
            loopP99: tp[0]?.sendingLoop ? round(median(tp.map(r => r.sendingLoop.p99)), 3) : null,
            idleP50: tp[0]?.idleLoop ? round(median(tp.map(r => r.idleLoop.p50)), 3) : null,
            idleP99: tp[0]?.idleLoop ? round(median(tp.map(r => r.idleLoop.p99)), 3) : null,
            bigMs: big ? round(big.elapsedMs) : null,
            bigMaxStallMs: big ? big.loop.max : null,
            bigLongestTickGapMs: big ? big.longestTickGapMs : null,
            bigRssGrowthMiB: big ? mib(big.rssGrowthHwm ?? big.rssGrowthSampled) : null,
            bigRssGrowthSampledMiB: big ? mib(big.rssGrowthSampled) : null,
            bigTokenRequests: big ? big.tokenRequests : null,
            coldMs: cold.length ? round(median(cold.map(r => r.coldMs))) : null,
            coldAll: cold.map(r => round(r.coldMs)),
            requireMs: cold.length ? round(median(cold.map(r => r.requireMs))) : null
        };
    }
    results.summary = summary;
    const { ours, nodemailer, minimal } = summary;
    const provision = summary['nodemailer-provision'];
    const unlimited = summary['ours-unlimited'];
    const ratio = (a, b) => (a === null || b === null || !b ? '-' : `${round(a / b, 2)}x`);
    const attachmentMiB = mib(BIG_ATTACHMENT);
    const rows = [
        ['metric', 'smtp-oauth-transport', `nodemailer ${info.nodemailer}`, 'ours / nodemailer', 'minimal Rust client'],
        [`throughput, ${count} x ~2 KB, 3 conns (msg/s, median of ${rounds})`, ours.perSecond, nodemailer.perSecond, ratio(ours.perSecond, nodemailer.perSecond), minimal.perSecond],
        ['  all rounds (msg/s)', ours.perSecondAll.join(' / '), nodemailer.perSecondAll.join(' / '), '', minimal.perSecondAll.join(' / ')],
        [`token requests for ${count} messages`, ours.tokenRequests.join(' / '), nodemailer.tokenRequests.join(' / '), '', minimal.tokenRequests.join(' / ')],
        [
            '  nodemailer without an initial accessToken (provisionCallback only)',
            '',
            `${provision.tokenRequests.join(' / ')} tokens, ${provision.perSecondAll.join(' / ')} msg/s`,
            '',
            ''
        ],
        [
            '  this package with maxMessages unlimited (no reconnects)',
            `${unlimited.perSecondAll.join(' / ')} msg/s, ${unlimited.connections.join(' / ')} conns, loop p99 ${unlimited.loopP99} ms`,
            '',
            ratio(unlimited.perSecond, minimal.perSecond) + ' of minimal',
            ''
        ],
        ['SMTP connections used', ours.connections.join(' / '), nodemailer.connections.join(' / '), '', minimal.connections.join(' / ')],
        ['event-loop delay while sending p50 / p99 (ms)', `${ours.loopP50} / ${ours.loopP99}`, `${nodemailer.loopP50} / ${nodemailer.loopP99}`, ratio(ours.loopP99, nodemailer.loopP99), '-'],
        ['event-loop delay idle p50 / p99 (ms)', `${ours.idleP50} / ${ours.idleP99}`, `${nodemailer.idleP50} / ${nodemailer.idleP99}`, '', '-'],
        [`${attachmentMiB} MiB attachment: time (ms)`, ours.bigMs, nodemailer.bigMs, ratio(ours.bigMs, nodemailer.bigMs), '-'],
        ['  longest event-loop stall (ms)', ours.bigMaxStallMs, nodemailer.bigMaxStallMs, ratio(ours.bigMaxStallMs, nodemailer.bigMaxStallMs), '-'],
        ['  peak RSS growth (MiB; VmHWM)', ours.bigRssGrowthMiB, nodemailer.bigRssGrowthMiB, ratio(ours.bigRssGrowthMiB, nodemailer.bigRssGrowthMiB), '-'],
        ['  peak RSS growth (MiB; sampled every 5 ms)', ours.bigRssGrowthSampledMiB, nodemailer.bigRssGrowthSampledMiB, '', '-'],
        [`cold first send (ms, median of ${rounds})`, ours.coldMs, nodemailer.coldMs, ratio(ours.coldMs, nodemailer.coldMs), '-'],
        ['  require() of the package (ms)', ours.requireMs, nodemailer.requireMs, '', '-']
    ];
    console.log('');
    console.log(table(rows));

    const targets = [
        [
            '>= 80 % of the minimal client\'s rate',
            ours.perSecond / minimal.perSecond >= 0.8,
            `${round((100 * ours.perSecond) / minimal.perSecond)} % (maxMessages unlimited: ${round((100 * unlimited.perSecond) / minimal.perSecond)} %)`
        ],
        ['1 token request per token lifetime', ours.tokenRequests.every(n => n === 1), `${ours.tokenRequests.join(' / ')} (token lifetime 3599 s)`],
        ['event-loop p99 <= idle p99 + 0.5 ms', ours.loopP99 <= ours.idleP99 + 0.5, `${ours.loopP99} ms vs idle ${ours.idleP99} ms`],
        [`no stall over 5 ms with a ${attachmentMiB} MiB attachment`, ours.bigMaxStallMs <= 5, `${ours.bigMaxStallMs} ms`],
        ['peak RSS growth < 2x the attachment', ours.bigRssGrowthMiB < 2 * attachmentMiB, `${ours.bigRssGrowthMiB} MiB vs ${2 * attachmentMiB} MiB`]
    ];
    results.targets = targets.map(([target, met, value]) => ({ target, met, value }));
    console.log('');
    console.log(table([['target (issue 4)', 'met', 'measured'], ...targets.map(([t, met, v]) => [t, met ? 'yes' : 'NO', v])]));
    console.log(`\n# reference (issue): nodemailer 10.6 ~500 msg/s with 21 token requests; minimal pipelined Rust client ~5,700 msg/s`);

    const out = path.join(ROOT, 'bench', 'results.json');
    fs.writeFileSync(out, JSON.stringify(results, null, 2) + '\n');
    console.log(`# results written to ${path.relative(process.cwd(), out) || out}`);
}

if (process.argv[2] === '--worker') {
    worker(process.argv[3], process.argv[4]).then(
        () => process.exit(0),
        err => {
            process.stderr.write(`${err && err.stack}\n`);
            process.exit(1);
        }
    );
} else {
    main().catch(err => {
        console.error(err);
        process.exitCode = 1;
    });
}
