// Child process used by lifecycle.test.mjs and pool.test.mjs: a short-lived script the way TAS cron jobs
// use the package. CommonJS on purpose (that is how the package is consumed).
//
//   node [--expose-gc] child-send.cjs <mode> [count]
//   env SMTP_OAUTH_TEST_CONFIG = JSON of config.mail.smtp
//
// Modes:
//   cron      create a transport, send `count` messages (default 1) one after another, print
//             SENT {"messageId":...} for each, never call close()
//   cron-exit like cron, then process.exit(0) right after the last send (the pool idle)
//   gc        send with a transport in a scope that ends, create a few more that are never
//             used, drop everything, global.gc() a few times, print GC-DONE, exit naturally
//   inflight  start a send, print STARTED, call process.exit(0) as soon as the parent
//             writes "exit" on stdin (the parent does so while the send is in flight)
'use strict';

const path = require('node:path');

// Same override as support/config.mjs (the environment is inherited from the test).
const { createTransport } = require(process.env.SMTP_OAUTH_TRANSPORT_PATH || path.join(__dirname, '..', '..', 'transport.js'));

const config = JSON.parse(process.env.SMTP_OAUTH_TEST_CONFIG);
const mode = process.argv[2];
const count = Number(process.argv[3] || 1);
const message = n => ({
    from: config.auth.user,
    to: 'rcpt@example.com',
    subject: `lifecycle ${mode} ${n}`,
    text: `sent by a child process in ${mode} mode`
});
const say = line => process.stdout.write(line + '\n');
const fail = err => {
    process.stderr.write(`SEND FAILED ${err && err.code} ${err && err.message}\n`);
    process.exitCode = 1;
};
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

if (mode === 'cron') {
    const transport = createTransport(config);
    (async () => {
        for (let n = 1; n <= count; n++) {
            const info = await transport.sendMail(message(n));
            say(`SENT ${JSON.stringify({ messageId: info.messageId })}`);
        }
    })().catch(fail);
    // no close(): the process must still end once there is nothing left to do (with
    // `pool: true`, its connection left idle)
} else if (mode === 'cron-exit') {
    const transport = createTransport(config);
    (async () => {
        for (let n = 1; n <= count; n++) {
            const info = await transport.sendMail(message(n));
            say(`SENT ${JSON.stringify({ messageId: info.messageId })}`);
        }
        process.exit(0);
    })().catch(fail);
} else if (mode === 'gc') {
    (async () => {
        // The transport only lives inside this function.
        await (async () => {
            const transport = createTransport(config);
            const info = await transport.sendMail(message(1));
            say(`SENT ${JSON.stringify({ messageId: info.messageId })}`);
        })();
        for (let i = 0; i < 5; i++) {
            createTransport(config); // never used, dropped at once
        }
        // Finalizers of native objects run after the GC pass, from the event loop, so
        // yield between collections.
        for (let i = 0; i < 5; i++) {
            global.gc();
            await sleep(50);
        }
        say('GC-DONE');
    })().catch(fail);
} else if (mode === 'inflight') {
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', data => {
        if (/\bexit\b/.test(data)) {
            process.exit(0);
        }
    });
    const transport = createTransport(config);
    transport.sendMail(message(1)).then(() => say('SENT (too early: the parent wanted it in flight)'), fail);
    say('STARTED');
} else {
    process.stderr.write(`unknown mode ${mode}\n`);
    process.exit(2);
}
