// Replies as RFC 5321 §4.3.2 defines them, against scripted servers that answer a command
// with another command's success code; a pooled connection that received a 421 while idle;
// verify() within maxConnections; an unpooled send that does not wait for QUIT.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { basicConfig, loadTransport, TEST_USER } from './support/config.mjs';
import { setupTransport, startEnv } from './support/env.mjs';
import { rejection } from './support/errors.mjs';
import { SILENT, startScriptedSmtp } from './support/scripted-smtp.mjs';
import { waitFor } from './support/wait.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 30000 };
const FAST = { connectionTimeout: 3000, greetingTimeout: 3000, socketTimeout: 3000, maxRetries: 0 };

const mail = subject => ({ from: TEST_USER, to: 'rcpt@example.com', subject, text: `body of ${subject}` });

/** A scripted SMTP server (accepting the env's tokens) and an OAuth2 transport to it. */
async function scripted(t, serverOpts = {}, config = {}) {
    const env = await startEnv();
    t.after(() => env.close());
    const smtp = await startScriptedSmtp({ validTokens: () => env.token.liveTokens(), ...serverOpts });
    t.after(() => smtp.close());
    const transport = env.track(createTransport(env.config({ ...FAST, port: smtp.port, ...config })));
    return { env, smtp, transport };
}

const commandsAfter = (smtp, verb) => {
    const lines = smtp.commands().map(c => c.line);
    return lines.slice(lines.findIndex(l => l.startsWith(verb)) + 1);
};

test('a 334 to AUTH PLAIN is not "authenticated": EPROTOCOL, no MAIL FROM', T, async t => {
    const smtp = await startScriptedSmtp({ on: { AUTH: () => '334 ' } });
    t.after(() => smtp.close());
    const transport = createTransport(basicConfig({ smtpPort: smtp.port, ...FAST }));
    t.after(() => transport.close());
    const err = await rejection(transport.sendMail(mail('plain 334')));
    assert.equal(err.code, 'EPROTOCOL');
    assert.equal(err.command, 'AUTH PLAIN');
    assert.equal(err.responseCode, 334);
    assert.ok(!smtp.commands().some(c => c.line.startsWith('MAIL')), 'no MAIL FROM after an unfinished AUTH');
});

test('a 250 instead of 235 to AUTH XOAUTH2 is not "authenticated": EPROTOCOL', T, async t => {
    const { smtp, transport } = await scripted(t, { on: { AUTH: () => '250 2.0.0 OK' } });
    const err = await rejection(transport.sendMail(mail('xoauth2 250')));
    assert.equal(err.code, 'EPROTOCOL');
    assert.equal(err.command, 'AUTH XOAUTH2');
    assert.ok(!smtp.commands().some(c => c.line.startsWith('MAIL')));
});

test('a 250 to DATA (no PIPELINING): EPROTOCOL, and no header or body line goes out as a command', T, async t => {
    const { smtp, transport } = await scripted(t, { on: { DATA: () => '250 2.0.0 OK' } });
    const message = { ...mail('data 250'), text: 'RCPT TO:<injected@example.com>\r\nQUIT' };
    const err = await rejection(transport.sendMail(message));
    assert.equal(err.code, 'EPROTOCOL');
    assert.equal(err.command, 'DATA');
    await waitFor(() => smtp.connections.every(c => c.destroyed), { label: 'the connection to close' });
    assert.deepEqual(commandsAfter(smtp, 'DATA'), [], 'nothing after DATA');
});

test('a 3xx to RCPT is not "accepted": EPROTOCOL, no DATA content', T, async t => {
    const { smtp, transport } = await scripted(t, { on: { RCPT: () => '354 go on' } });
    const err = await rejection(transport.sendMail(mail('rcpt 354')));
    assert.equal(err.code, 'EPROTOCOL');
    assert.equal(err.command, 'RCPT TO');
    assert.equal(smtp.messages.length, 0);
    assert.ok(!smtp.commands().some(c => c.line === 'DATA'));
});

test('a 4xx after the XOAUTH2 334 challenge stays transient', T, async t => {
    const { transport } = await scripted(t, {
        on: {
            AUTH: () => '334 eyJzdGF0dXMiOiI0NTQifQ==',
            other: () => '454 4.7.0 Temporary authentication failure'
        }
    });
    const err = await rejection(transport.sendMail(mail('xoauth2 454')));
    assert.equal(err.code, 'EAUTH');
    assert.equal(err.responseCode, 454);
    assert.equal(err.permanent, false);
    assert.match(err.message, /"status":"454"/);
});

test('pool: a 421 sent while the connection was idle is not read as the reply to the next MAIL', T, async t => {
    let delivered = 0;
    const { smtp, transport } = await scripted(
        t,
        {
            on: {
                DOT: conn => {
                    delivered += 1;
                    if (delivered === 1) {
                        // The server gives up on the idle connection right after the first message.
                        setTimeout(() => conn.write('421 4.4.2 localhost idle timeout, closing\r\n'), 50);
                    }
                    return undefined;
                }
            }
        },
        { pool: true, maxConnections: 1 }
    );
    await transport.sendMail(mail('first'));
    await waitFor(() => smtp.connections[0].bytesWritten > 0 && smtp.connections[0].commands.length > 0, { label: 'first send' });
    await new Promise(resolve => setTimeout(resolve, 300));
    const info = await transport.sendMail(mail('second'));
    assert.deepEqual(info.accepted, ['rcpt@example.com']);
    const mailsOnFirst = smtp.connections[0].commands.filter(c => c.line.startsWith('MAIL')).length;
    assert.equal(mailsOnFirst, 1, 'the second message did not go over the connection that said 421');
    assert.equal(smtp.connections.length, 2);
});

test('pool: verify() takes a connection slot and never exceeds maxConnections', T, async t => {
    const { env, transport } = await setupTransport(t, createTransport, {
        smtp: { dataDelayMs: 300 },
        config: { ...FAST, pool: true, maxConnections: 1 }
    });
    await Promise.all([transport.sendMail(mail('a')), transport.verify(), transport.sendMail(mail('b')), transport.verify()]);
    assert.equal(env.smtp.peakConnections, 1);
    // verify() with the slot held by an idle connection does not wait for idleTimeout.
    await transport.sendMail(mail('c'));
    assert.equal(await transport.verify(), true);
    assert.equal(env.smtp.peakConnections, 1);
});

test('without pool, the send resolves on the reply to the message, before QUIT is answered', T, async t => {
    let quitAnsweredAt = null;
    const { smtp, transport } = await scripted(t, {
        on: {
            QUIT: conn => {
                setTimeout(() => {
                    quitAnsweredAt = Date.now();
                    conn.write('221 2.0.0 bye\r\n');
                    conn.socket.end();
                }, 1000);
                return SILENT;
            }
        }
    });
    const info = await transport.sendMail(mail('no quit wait'));
    const resolvedAt = Date.now();
    assert.deepEqual(info.accepted, ['rcpt@example.com']);
    assert.equal(quitAnsweredAt, null, 'the send resolved before QUIT was answered');
    await waitFor(() => quitAnsweredAt !== null, { label: 'QUIT answered' });
    assert.ok(resolvedAt <= quitAnsweredAt);
    assert.ok(smtp.commands().some(c => c.line === 'QUIT'), 'QUIT was still sent');
});
