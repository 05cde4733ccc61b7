// Hardening, part 2: bad input gets a clear error, never a crash, a hang or a smuggled header
// or SMTP command.
//
// - CR / LF / CRLF in every header-ish field (subject, custom header values and names, display
//   names, addresses, message ids, attachment filenames and content ids, the EHLO name): the
//   raw bytes the server received hold no injected header and it saw no injected command;
//   or the send was refused with EMESSAGE (ECONFIG) naming the field, before connecting.
// - Header lines stay within RFC 5322's 998 bytes.
// - Invalid addresses -> EMESSAGE naming the field, 0 connections; IDN domains and quoted local
//   parts are valid.
// - Wrong types in the config and the message, circular objects -> ECONFIG / EMESSAGE naming
//   the field; never a crash or a bare N-API TypeError.
// - A message larger than the server's SIZE -> EMESSAGE stating both sizes, no DATA.
// - A missing attachment file -> EMESSAGE naming the path, 0 connections.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { basicConfig, loadTransport, TEST_USER, TRANSPORT_PATH } from './support/config.mjs';
import { setupTransport, startEnv } from './support/env.mjs';
import { assertCode, rejection } from './support/errors.mjs';
import { startScriptedSmtp } from './support/scripted-smtp.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 30000 };
const FAST = { connectionTimeout: 1500, greetingTimeout: 1500, socketTimeout: 1500, maxRetries: 0 };

const base = { from: TEST_USER, to: 'rcpt@example.com', subject: 'input test', text: 'body' };

const setup = (t, { smtp, config } = {}) => setupTransport(t, createTransport, { smtp, config: { ...FAST, ...config } });

/** The header blocks of a raw message: the top one and those of every MIME part, unfolded lines kept as they are. */
function headerLines(raw) {
    const lines = raw.toString('latin1').split('\r\n');
    const out = [];
    let inHeader = true;
    for (const line of lines) {
        if (inHeader && line === '') {
            inHeader = false;
        } else if (inHeader) {
            out.push(line);
        } else if (/^--[^\s]+$/.test(line)) {
            inHeader = true; // a MIME boundary: the part's headers follow
        }
    }
    return out;
}

/** Names of the header fields in the blocks above (continuation lines skipped). */
const headerNames = raw => headerLines(raw).filter(l => !/^[ \t]/.test(l)).map(l => l.split(':')[0].toLowerCase());

// ---------------------------------------------------------------------------------------
// Header and command injection

const BREAKS = { CRLF: '\r\n', LF: '\n', CR: '\r' };

/** Each builds a message trying to smuggle "X-Injected: 1" and "Bcc: evil@example.com" headers with `br`. */
const INJECTIONS = {
    subject: br => ({ subject: `Hello${br}X-Injected: 1${br}Bcc: evil@example.com` }),
    'custom header value': br => ({ headers: { 'X-Custom': `v${br}X-Injected: 1${br}Bcc: evil@example.com` } }),
    'custom header value (array form)': br => ({ headers: [{ key: 'X-Custom', value: `v${br}X-Injected: 1` }] }),
    'display name (object)': br => ({ to: { name: `Innocent${br}X-Injected: 1${br}Bcc: evil@example.com`, address: 'rcpt@example.com' } }),
    'display name (string)': br => ({ to: `"Innocent${br}X-Injected: 1" <rcpt@example.com>` }),
    'from display name': br => ({ from: { name: `Sender${br}X-Injected: 1`, address: TEST_USER } }),
    'to address': br => ({ to: `rcpt@example.com${br}X-Injected: 1` }),
    'cc address': br => ({ cc: `cc@example.com${br}Bcc: evil@example.com` }),
    'replyTo address': br => ({ replyTo: `reply@example.com${br}X-Injected: 1` }),
    messageId: br => ({ messageId: `<id@example.com>${br}X-Injected: 1` }),
    inReplyTo: br => ({ inReplyTo: `<id@example.com>${br}X-Injected: 1` }),
    references: br => ({ references: [`<a@example.com>${br}X-Injected: 1`] }),
    'attachment filename': br => ({ attachments: [{ filename: `a${br}X-Injected: 1${br}.txt`, content: 'hello' }] }),
    'attachment cid': br => ({ html: '<img src="cid:c1">', attachments: [{ filename: 'a.png', content: 'png', cid: `c1${br}X-Injected: 1` }] }),
    'attachment contentType': br => ({ attachments: [{ filename: 'a.txt', content: 'x', contentType: `text/plain${br}X-Injected: 1` }] })
};

for (const [field, build] of Object.entries(INJECTIONS)) {
    test(`header injection through ${field} (CRLF, LF, CR): no injected header in the bytes received, or EMESSAGE naming the field`, T, async t => {
        const { env, transport } = await setup(t);
        for (const [kind, br] of Object.entries(BREAKS)) {
            const msg = { ...base, ...build(br) };
            const connectionsBefore = env.smtp.connections.length;
            const messagesBefore = env.smtp.messages.length;
            let info;
            try {
                info = await transport.sendMail(msg);
            } catch (err) {
                assertCode(err, 'EMESSAGE');
                assert.match(err.message, /^message\./, `${kind}: the error names the field: ${err.message}`);
                assert.equal(env.smtp.connections.length, connectionsBefore, `${kind}: refused before connecting`);
                continue;
            }
            assert.equal(env.smtp.messages.length, messagesBefore + 1);
            const { raw, envelope } = env.smtp.messages.at(-1);
            const names = headerNames(raw);
            assert.ok(!names.includes('x-injected'), `${kind}: an X-Injected header was created:\n${headerLines(raw).join('\n')}`);
            assert.ok(!names.includes('bcc'), `${kind}: a Bcc header was created`);
            assert.ok(!envelope.to.some(a => /evil/.test(a)), `${kind}: evil@example.com became a recipient`);
            assert.ok(!info.accepted.some(a => /evil/.test(a)));
        }
        assert.ok(!env.smtp.rcptAttempts.some(r => /evil@example\.com/i.test(r.address)), 'evil@example.com never got a RCPT TO');
    });
}

test('a header name with CR/LF, a colon or a space -> EMESSAGE naming message.headers, no connection', T, async t => {
    const { env, transport } = await setup(t);
    for (const name of ['X-A\r\nBcc', 'X-A\nX-Injected', 'X-A: 1\r\nX', 'X A', '']) {
        const err = await rejection(transport.sendMail({ ...base, headers: { [name]: 'v' } }));
        assertCode(err, 'EMESSAGE');
        assert.match(err.message, /message\.headers/);
    }
    assert.equal(env.smtp.connections.length, 0);
});

test('CR/LF in addresses can never add an SMTP command: to, cc, bcc, from, sender, replyTo, envelope.from, envelope.to -> EMESSAGE naming the field, 0 connections', T, async t => {
    const smtp = await startScriptedSmtp();
    t.after(() => smtp.close());
    const env = await startEnv();
    t.after(() => env.close());
    const transport = env.track(createTransport(env.config({ ...FAST, port: smtp.port })));
    const evil = br => `rcpt@example.com>${br}RCPT TO:<evil@example.com`;
    const cases = {
        to: br => ({ to: evil(br) }),
        cc: br => ({ cc: evil(br) }),
        bcc: br => ({ bcc: [evil(br)] }),
        from: br => ({ from: `${TEST_USER}>${br}MAIL FROM:<evil@example.com` }),
        sender: br => ({ sender: evil(br) }),
        replyTo: br => ({ replyTo: evil(br) }),
        'envelope.from': br => ({ envelope: { from: `${TEST_USER}${br}RCPT TO:<evil@example.com>`, to: 'rcpt@example.com' } }),
        'envelope.to': br => ({ envelope: { to: [evil(br)] } })
    };
    for (const [field, build] of Object.entries(cases)) {
        for (const [kind, br] of Object.entries(BREAKS)) {
            const err = await rejection(transport.sendMail({ ...base, ...build(br) }));
            assertCode(err, 'EMESSAGE');
            assert.ok(err.message.startsWith(`message.${field}`), `${field} ${kind}: ${err.message}`);
        }
    }
    assert.equal(smtp.connections.length, 0);
    assert.ok(!smtp.commands().some(c => /evil/.test(c.line)));
});

test('CR/LF in the EHLO name (config `name`) -> ECONFIG naming mail.smtp.name; never an injected SMTP command', T, async t => {
    const smtp = await startScriptedSmtp();
    t.after(() => smtp.close());
    const env = await startEnv();
    t.after(() => env.close());
    for (const name of ['client.example.com\r\nMAIL FROM:<evil@example.com>', 'client\nRCPT TO:<evil@example.com>', 'client\rNOOP']) {
        let transport;
        try {
            transport = createTransport(env.config({ ...FAST, port: smtp.port, name }));
        } catch (err) {
            assertCode(err, 'ECONFIG');
            assert.match(err.message, /mail\.smtp\.name/);
            continue;
        }
        // Accepted: show what the server saw.
        await transport.sendMail(base).catch(() => {});
        await transport.close();
        const lines = smtp.commands().map(c => `${c.secure ? 'TLS' : 'PLAIN'} ${c.line}`);
        assert.fail(`name ${JSON.stringify(name)} was accepted; the server received these command lines:\n${lines.join('\n')}`);
    }
});

test('header lines never exceed 998 bytes: a long messageId, custom header value or display name is folded or encoded, or refused with EMESSAGE naming the field', T, async t => {
    const { env, transport } = await setup(t);
    const long = 'x'.repeat(1500);
    const cases = {
        'message.messageId': { messageId: `<${long}@example.com>` },
        'message.headers': { headers: { 'X-Long': long } },
        'message.to': { to: { name: long, address: 'rcpt@example.com' } },
        'message.subject': { subject: long },
        'message.attachments': { attachments: [{ filename: `${long}.txt`, content: 'x' }] },
        'message.references': { references: [`<${long}@example.com>`] }
    };
    const problems = [];
    for (const [field, extra] of Object.entries(cases)) {
        let sent = false;
        try {
            await transport.sendMail({ ...base, ...extra });
            sent = true;
        } catch (err) {
            if (err.code !== 'EMESSAGE' || !err.message.startsWith(field)) {
                problems.push(`${field}: ${err.code} ${err.message}`);
            }
        }
        if (sent) {
            const tooLong = headerLines(env.smtp.messages.at(-1).raw).filter(l => Buffer.byteLength(l, 'latin1') > 998);
            if (tooLong.length) {
                problems.push(`${field}: sent with a header line of ${Buffer.byteLength(tooLong[0], 'latin1')} bytes: ${tooLong[0].slice(0, 60)}...`);
            }
        }
    }
    assert.deepEqual(problems, []);
});

// ---------------------------------------------------------------------------------------
// Addresses

test('invalid addresses in every address field -> EMESSAGE naming the field, before any connection', T, async t => {
    const { env, transport } = await setup(t);
    const invalid = [
        'not an address',
        'a@',
        '@example.com',
        'a b@example.com',
        'a@example..com',
        '<a@example.com',
        'a@example.com>',
        'a@example.com garbage',
        'Name <a@example.com> trailing',
        'a@@example.com',
        '.a@example.com',
        'a.@example.com',
        '"unterminated@example.com',
        'a@-example.com',
        'a@example.com\u0000',
        `${'x'.repeat(65)}@example.com`
    ];
    const fields = {
        to: a => ({ to: a }),
        cc: a => ({ cc: ['ok@example.com', a] }),
        bcc: a => ({ bcc: a }),
        from: a => ({ from: a }),
        sender: a => ({ sender: a }),
        replyTo: a => ({ replyTo: a }),
        'envelope.to': a => ({ envelope: { to: a } }),
        'envelope.from': a => ({ envelope: { from: a, to: 'rcpt@example.com' } }),
        'to.address': a => ({ to: { name: 'Name', address: a } })
    };
    const problems = [];
    for (const [field, build] of Object.entries(fields)) {
        for (const address of invalid) {
            try {
                await transport.sendMail({ ...base, ...build(address) });
                problems.push(`${field} ${JSON.stringify(address)}: accepted`);
            } catch (err) {
                const path = field === 'cc' ? 'message.cc[1]' : `message.${field}`;
                if (err.code !== 'EMESSAGE' || !err.message.startsWith(path)) {
                    problems.push(`${field} ${JSON.stringify(address)}: ${err.code} ${err.message}`);
                }
            }
        }
    }
    assert.deepEqual(problems, []);
    assert.equal(env.smtp.connections.length, 0, 'nothing connected');
});

test('valid but unusual addresses are accepted: IDN domain user@bücher.example and quoted local part "john doe"@example.com', T, async t => {
    const smtp = await startScriptedSmtp();
    t.after(() => smtp.close());
    const env = await startEnv();
    t.after(() => env.close());
    const transport = env.track(createTransport(env.config({ ...FAST, port: smtp.port })));
    const info = await transport.sendMail({ ...base, to: ['user@bücher.example', '"john doe"@example.com', 'Name <user@xn--bcher-kva.example>'] });
    assert.equal(info.accepted.length, 3);
    const rcpts = smtp.commands().filter(c => /^RCPT TO:/i.test(c.line)).map(c => c.line);
    assert.ok(rcpts.some(l => /^RCPT TO:<user@(bücher|xn--bcher-kva)\.example>/.test(l)), rcpts.join('\n'));
    assert.ok(rcpts.includes('RCPT TO:<"john doe"@example.com>'), rcpts.join('\n'));
    assert.equal(smtp.messages.length, 1);
});

// ---------------------------------------------------------------------------------------
// Wrong types

function configError(config) {
    try {
        createTransport(config).close();
    } catch (err) {
        return err;
    }
    return null;
}

const CONFIG_CASES = [
    ['host', 42],
    ['host', { name: 'smtp' }],
    ['host', ['smtp.example.com']],
    ['host', () => 'smtp.example.com'],
    ['host', Symbol('smtp')],
    ['host', ''],
    ['port', -1],
    ['port', 0],
    ['port', 70000],
    ['port', 1.5],
    ['port', 'abc'],
    ['port', Number.NaN],
    ['port', Infinity],
    ['port', 25n],
    ['port', {}],
    ['secure', 'true'],
    ['connectionTimeout', 1e12],
    ['greetingTimeout', -5],
    ['socketTimeout', 'soon'],
    ['socketTimeout', 1e12],
    ['auth', 'user@example.com'],
    ['auth.user', { address: 'a@b.c' }],
    ['auth.user', 7],
    ['oauth2', 'yes'],
    ['oauth2.clientId', 42],
    ['oauth2.clientSecret', 42],
    ['oauth2.clientSecret', { value: 'x' }],
    ['oauth2.scope', ['https://outlook.office365.com/.default']],
    ['oauth2.host', 42],
    ['oauth2.timeout', 1e12],
    ['oauth2.timeout', -1],
    ['oauth2.renewBeforeSeconds', 'often'],
    ['tls', 'yes'],
    ['tls.ca', 42],
    ['tls.ca', 'not a pem'],
    ['tls.rejectUnauthorized', 'no'],
    ['tls.servername', 5],
    ['tls.minVersion', 1.3],
    ['name', 5],
    ['debug', 'yes'],
    ['pool', 1],
    ['maxRetries', 100],
    ['maxRetries', -1],
    ['type', 'xoauth']
];

function tasTemplate() {
    return {
        type: 'oauth2',
        host: 'smtp.example.com',
        port: 587,
        auth: { user: TEST_USER },
        oauth2: {
            host: 'https://login.microsoftonline.com/t/oauth2/v2.0/token',
            clientId: 'client',
            clientSecret: 'secret-value',
            scope: 'https://outlook.office365.com/.default'
        }
    };
}

function withValue(config, path, value) {
    const keys = path.split('.');
    const last = keys.pop();
    let obj = config;
    for (const key of keys) {
        obj[key] = obj[key] || {};
        obj = obj[key];
    }
    obj[last] = value;
    return config;
}

test('wrong types in the config -> ECONFIG naming the field (synchronously, never a bare N-API TypeError)', T, () => {
    const problems = [];
    for (const [path, value] of CONFIG_CASES) {
        const shown = typeof value === 'symbol' || typeof value === 'bigint' ? String(value) : JSON.stringify(value) ?? String(value);
        const err = configError(withValue(tasTemplate(), path, value));
        if (!err) {
            problems.push(`${path} = ${shown}: accepted`);
        } else if (err.code !== 'ECONFIG' || !err.message.includes(`mail.smtp.${path}`)) {
            problems.push(`${path} = ${shown}: ${err.name} ${err.code} ${err.message}`);
        } else if (!(err instanceof Error)) {
            problems.push(`${path}: not an Error`);
        }
    }
    assert.deepEqual(problems, []);
});

test('the config itself not an object (null, a number, a string, an array) -> ECONFIG naming mail.smtp', T, () => {
    for (const config of [null, undefined, 42, 'smtp.example.com', ['smtp.example.com']]) {
        const err = configError(config);
        assert.ok(err, `${String(config)} accepted`);
        assertCode(err, 'ECONFIG');
        assert.match(err.message, /^mail\.smtp (must be an object|is missing)/);
    }
});

test('wrong types in the message -> EMESSAGE naming the field, no connection', T, async t => {
    const { env, transport } = await setup(t);
    const cases = [
        ['message.to', { to: () => 'rcpt@example.com' }],
        ['message.to', { to: 42 }],
        ['message.to', { to: Symbol('to') }],
        ['message.to', { to: 7n }],
        ['message.to.address', { to: { foo: 1 } }],
        ['message.to.address', { to: { name: 'x', address: { a: 1 } } }],
        ['message.to[1]', { to: ['rcpt@example.com', 5] }],
        ['message.cc', { cc: true }],
        ['message.from.address', { from: { name: 'no address' } }],
        ['message.subject', { subject: {} }],
        ['message.subject', { subject: ['a'] }],
        ['message.text', { text: 5 }],
        ['message.html', { html: { body: 'x' } }],
        ['message.attachments', { attachments: 5 }],
        ['message.attachments[0]', { attachments: [5] }],
        ['message.attachments[0].content', { attachments: [{ filename: 'a.txt', content: 5 }] }],
        ['message.attachments[0].content', { attachments: [{ filename: 'a.txt', content: { data: 'x' } }] }],
        ['message.attachments[0].content', { attachments: [{ filename: 'a.txt', content: true }] }],
        ['message.attachments[0].encoding', { attachments: [{ filename: 'a.txt', content: 'x', encoding: 5 }] }],
        ['message.attachments[0].filename', { attachments: [{ filename: 5, content: 'x' }] }],
        ['message.attachments[0].path', { attachments: [{ path: 5 }] }],
        ['message.headers', { headers: 'X-A: 1' }],
        ['message.headers.X-A', { headers: { 'X-A': {} } }],
        ['message.date', { date: 'yesterday' }],
        ['message.date', { date: new Date(Number.NaN) }],
        ['message.date', { date: {} }],
        ['message.priority', { priority: 'urgent' }],
        ['message.envelope', { envelope: 'rcpt@example.com' }],
        ['message.messageId', { messageId: {} }]
    ];
    const problems = [];
    for (const [field, extra] of cases) {
        try {
            await transport.sendMail({ ...base, ...extra });
            problems.push(`${field}: accepted`);
        } catch (err) {
            if (err.code !== 'EMESSAGE' || !err.message.startsWith(field)) {
                problems.push(`${field}: ${err.code} ${err.message}`);
            }
        }
    }
    for (const message of [null, undefined, 42, 'text', () => {}]) {
        try {
            await transport.sendMail(message);
            problems.push(`message ${String(message)}: accepted`);
        } catch (err) {
            if (err.code !== 'EMESSAGE' || !/^message\b/.test(err.message)) {
                problems.push(`message ${String(message)}: ${err.code} ${err.message}`);
            }
        }
    }
    assert.deepEqual(problems, []);
    assert.equal(env.smtp.connections.length, 0);
});

test('a date after the year 9999 -> EMESSAGE naming message.date (not an internal error); the transport keeps working', T, async t => {
    const { env, transport } = await setup(t);
    const problems = [];
    for (const date of [new Date(253402300800000), new Date(8.64e15), 1e300]) {
        try {
            await transport.sendMail({ ...base, date });
            problems.push(`${String(date)}: accepted`);
        } catch (err) {
            if (err.code !== 'EMESSAGE' || !err.message.startsWith('message.date')) {
                problems.push(`${String(date)}: ${err.code} ${err.message}`);
            }
        }
    }
    assert.equal(env.smtp.connections.length, 0);
    await transport.sendMail({ ...base, date: new Date('9999-12-31T00:00:00Z') });
    assert.equal(env.smtp.messages.length, 1, 'the year 9999 itself is fine, and the transport still works');
    assert.deepEqual(problems, []);
});

test('a circular reference in the config or the message (one self-reference) -> a normal outcome, no crash', T, async t => {
    const { env, transport } = await setup(t);
    const config = env.config(FAST);
    config.self = config; // an unknown key: ignored
    createTransport(config).close();
    const tls = env.config(FAST).tls;
    tls.self = tls;
    createTransport({ ...env.config(FAST), tls }).close();

    const headers = { 'X-A': '1' };
    headers.self = headers;
    const err = await rejection(transport.sendMail({ ...base, headers }));
    assertCode(err, 'EMESSAGE');
    assert.match(err.message, /^message\.headers\.self/);
    const to = ['rcpt@example.com'];
    to.push(to);
    const err2 = await rejection(transport.sendMail({ ...base, to }));
    assertCode(err2, 'EMESSAGE');
    assert.match(err2.message, /^message\.to\[1\]/);
    assert.equal(env.smtp.connections.length, 0);
});

test('a circular object with several self-references in the config or the message -> ECONFIG/EMESSAGE within 5 s (run in a child process)', T, async () => {
    // Each object refers to itself three times: walking it naively visits 3^depth nodes.
    const script = `
        const { createTransport } = require(${JSON.stringify(TRANSPORT_PATH)});
        const loop = () => { const o = { x: 1 }; o.a = o; o.b = o; o.c = o; return o; };
        const config = ${JSON.stringify({ ...basicConfig({ smtpPort: 1 }), connectionTimeout: 500, maxRetries: 0 })};
        const report = (label, err) => console.log(label, err ? err.code : 'none', err ? err.message : '');
        try { createTransport({ ...config, tls: loop() }); report('CONFIG'); } catch (err) { report('CONFIG', err); }
        const transport = createTransport(config);
        transport.sendMail({ from: 'a@example.com', to: 'b@example.com', text: 'x', headers: loop() })
            .then(() => report('MESSAGE'), err => report('MESSAGE', err))
            .finally(() => transport.close());
    `;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', chunk => (stdout += chunk));
    child.stderr.on('data', chunk => (stderr += chunk));
    let killed = false;
    const guard = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
    }, 5000);
    const code = await new Promise(resolve => child.on('close', resolve));
    clearTimeout(guard);
    assert.equal(killed, false, `the child was still busy after 5 s (stdout so far: ${JSON.stringify(stdout)})`);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^CONFIG (ECONFIG mail\.smtp\.tls|none)/m);
    assert.match(stdout, /^MESSAGE EMESSAGE message\.headers/m);
});

// ---------------------------------------------------------------------------------------
// Sizes and files

test("a message larger than the server's SIZE -> EMESSAGE stating both sizes, before MAIL FROM and DATA", T, async t => {
    const { env, transport } = await setup(t, { smtp: { size: 4000 } });
    let dataStarts = 0;
    env.smtp.events.on('data-start', () => (dataStarts += 1));
    const err = await rejection(transport.sendMail({ ...base, text: 'y'.repeat(20000) }));
    assertCode(err, 'EMESSAGE');
    assert.match(err.message, /\b4000\b/, `the server's limit is stated: ${err.message}`);
    const size = /\b(\d{5,})\b/.exec(err.message);
    assert.ok(size && Number(size[1]) > 20000, `the message size is stated: ${err.message}`);
    assert.equal(dataStarts, 0, 'no DATA');
    assert.equal(env.smtp.mailFromAttempts.length, 0, 'not even MAIL FROM');
    assert.equal(env.smtp.messages.length, 0);
    // A message within the limit still goes through the same transport.
    await transport.sendMail({ ...base, text: 'small' });
    assert.equal(env.smtp.messages.length, 1);
});

test('a missing attachment file -> EMESSAGE naming the field and the path, before any connection', T, async t => {
    const { env, transport } = await setup(t);
    const path = '/nonexistent/dir/report-2026.pdf';
    const err = await rejection(transport.sendMail({ ...base, attachments: [{ filename: 'ok.txt', content: 'x' }, { path }] }));
    assertCode(err, 'EMESSAGE');
    assert.ok(err.message.startsWith('message.attachments[1].path'), err.message);
    assert.ok(err.message.includes(path), err.message);
    const dir = await rejection(transport.sendMail({ ...base, attachments: [{ path: '/' }] }));
    assertCode(dir, 'EMESSAGE');
    assert.ok(dir.message.startsWith('message.attachments[0].path'), dir.message);
    assert.equal(env.smtp.connections.length, 0);
});
