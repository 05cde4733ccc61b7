// RFC 2920 §3.1: a pipelining client must not fill the connection while it is not reading.
// This server is the strict kind: it reads a command, writes its reply, and reads nothing
// more until the client has taken that reply (it stops reading while its writes wait).
// A client that writes 2,000 RCPTs before reading any reply waits for a server that waits
// for it; in bounded groups it goes through.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { loadTransport } from './support/config.mjs';
import { closerOf, listenOnLoopback, trackSockets } from './support/listen.mjs';

const { createTransport } = loadTransport();
const T = { timeout: 60000 };

/** Long lines fill the socket buffers with few commands. */
const PADDING = 'x'.repeat(4000);

async function startStrictServer(t) {
    const received = { rcpt: 0, messages: 0 };
    const server = net.createServer(socket => {
        let buffer = '';
        let inData = false;
        const reply = text => {
            if (!socket.write(`${text}\r\n`)) {
                socket.pause();
                socket.once('drain', () => socket.resume());
            }
        };
        socket.setEncoding('latin1');
        socket.on('error', () => {});
        socket.on('data', chunk => {
            buffer += chunk;
            let nl;
            while ((nl = buffer.indexOf('\n')) >= 0) {
                const line = buffer.slice(0, nl).replace(/\r$/, '');
                buffer = buffer.slice(nl + 1);
                if (inData) {
                    if (line === '.') {
                        inData = false;
                        received.messages += 1;
                        reply('250 2.0.0 queued');
                    }
                    continue;
                }
                const verb = line.slice(0, 4).toUpperCase();
                if (verb === 'EHLO') reply(['250-localhost', '250-PIPELINING', '250 8BITMIME'].join('\r\n'));
                else if (verb === 'RCPT') {
                    received.rcpt += 1;
                    reply(`250-2.1.5 ${PADDING}\r\n250 2.1.5 Recipient OK`);
                } else if (verb === 'DATA') {
                    inData = true;
                    reply('354 go ahead');
                } else if (verb === 'QUIT') {
                    reply('221 bye');
                    socket.end();
                } else reply('250 OK');
            }
        });
        socket.write('220 localhost strict pipelining server\r\n');
    });
    const sockets = trackSockets(server);
    const port = await listenOnLoopback(server);
    t.after(closerOf(server, sockets));
    return { port, received };
}

test('2,000 pipelined recipients to a server that does not read while its replies wait: no deadlock', T, async t => {
    const { port, received } = await startStrictServer(t);
    const transport = createTransport({ host: '127.0.0.1', port, maxRetries: 0, socketTimeout: 20000, maxRecipientsPerMessage: 2000 });
    t.after(() => transport.close());
    // Addresses near the 254-byte limit: half a megabyte of RCPT commands, 8 MB of replies.
    const domain = `${'d'.repeat(60)}.${'e'.repeat(60)}.${'f'.repeat(60)}.example`;
    const to = Array.from({ length: 2000 }, (_, i) => `${String(i).padStart(4, '0')}-${'r'.repeat(55)}@${domain}`);
    const info = await transport.sendMail({ from: 'sender@example.com', to: 'list@example.com', envelope: { from: 'sender@example.com', to }, text: 'x' });
    assert.equal(info.accepted.length, 2000);
    assert.equal(received.rcpt, 2000);
    assert.equal(received.messages, 1);
});
