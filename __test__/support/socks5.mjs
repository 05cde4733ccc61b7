// A SOCKS5 proxy on 127.0.0.1 (RFC 1928, username/password RFC 1929) for the SMTP proxy
// tests. It connects only to loopback targets (127.0.0.0/8, ::1, or the name `localhost`,
// which it resolves to 127.0.0.1); any other target is answered "host unreachable" (4).
// Every request and the bytes each way through each tunnel are recorded.
import net from 'node:net';
import { closerOf, listenOnLoopback, trackSockets } from './listen.mjs';

const REPLY = { succeeded: 0, hostUnreachable: 4, connectionRefused: 5, commandNotSupported: 7 };

/** `read(n)`: the next n bytes of `socket`; `rest()`: what was read ahead, after which the socket is piped. */
function byteReader(socket) {
    let buffer = Buffer.alloc(0);
    let wake = null;
    let ended = false;
    const onData = chunk => {
        buffer = Buffer.concat([buffer, chunk]);
        wake?.();
    };
    socket.on('data', onData);
    socket.on('close', () => {
        ended = true;
        wake?.();
    });
    return {
        async read(n) {
            while (buffer.length < n) {
                if (ended) {
                    throw new Error('the client closed the connection');
                }
                await new Promise(resolve => (wake = resolve));
                wake = null;
            }
            const out = buffer.subarray(0, n);
            buffer = buffer.subarray(n);
            return out;
        },
        rest() {
            socket.off('data', onData);
            socket.pause();
            return buffer;
        }
    };
}

function reply(socket, code) {
    socket.write(Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]));
}

/**
 * @param {object} [opts]
 * @param {string} [opts.user]      with `password`: username/password authentication is required
 * @param {string} [opts.password]
 * @returns {Promise<{
 *   port: number,
 *   url: (scheme?: string, userinfo?: string) => string,
 *   requests: Array<{methods:number[], auth:{user:string,password:string,accepted:boolean}|null,
 *                    addressType:'ipv4'|'domain'|'ipv6'|null, target:string|null, reply:number|null}>,
 *   tunnels: Array<{target:string, fromClient:Buffer[], fromTarget:Buffer[]}>,
 *   close: () => Promise<void>
 * }>}
 */
export async function startSocks5(opts = {}) {
    const requests = [];
    const tunnels = [];
    const server = net.createServer(socket => {
        socket.on('error', () => {});
        handle(socket).catch(() => socket.destroy());
    });
    const sockets = trackSockets(server);

    async function handle(socket) {
        const input = byteReader(socket);
        const request = { methods: [], auth: null, addressType: null, target: null, reply: null };
        requests.push(request);
        const [version, count] = await input.read(2);
        if (version !== 5) {
            return socket.destroy();
        }
        request.methods = [...(await input.read(count))];
        const wantsAuth = opts.user !== undefined;
        const method = wantsAuth ? 2 : 0;
        if (!request.methods.includes(method)) {
            return socket.end(Buffer.from([5, 0xff]));
        }
        socket.write(Buffer.from([5, method]));
        if (wantsAuth) {
            const [, userLength] = await input.read(2);
            const user = (await input.read(userLength)).toString('utf8');
            const [passwordLength] = await input.read(1);
            const password = (await input.read(passwordLength)).toString('utf8');
            const accepted = user === opts.user && password === opts.password;
            request.auth = { user, password, accepted };
            if (!accepted) {
                return socket.end(Buffer.from([1, 1]));
            }
            socket.write(Buffer.from([1, 0]));
        }
        const [, command, , addressType] = await input.read(4);
        let host;
        if (addressType === 1) {
            host = [...(await input.read(4))].join('.');
            request.addressType = 'ipv4';
        } else if (addressType === 4) {
            const bytes = await input.read(16);
            const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16)).join(':');
            host = new URL(`http://[${groups}]`).hostname.slice(1, -1); // the short form, e.g. ::1
            request.addressType = 'ipv6';
        } else {
            const [length] = await input.read(1);
            host = (await input.read(length)).toString('utf8');
            request.addressType = 'domain';
        }
        const port = (await input.read(2)).readUInt16BE(0);
        request.target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
        const finish = code => {
            request.reply = code;
            reply(socket, code);
        };
        if (command !== 1) {
            finish(REPLY.commandNotSupported);
            return socket.end();
        }
        const loopback = host === 'localhost' || host === '::1' || (net.isIPv4(host) && host.startsWith('127.'));
        if (!loopback) {
            finish(REPLY.hostUnreachable);
            return socket.end();
        }
        const upstream = net.connect({ host: host === 'localhost' ? '127.0.0.1' : host, port });
        upstream.on('error', () => {
            if (request.reply === null) {
                finish(REPLY.connectionRefused);
                socket.end();
            }
            socket.destroy();
        });
        upstream.on('connect', () => {
            finish(REPLY.succeeded);
            const record = { target: request.target, fromClient: [], fromTarget: [] };
            tunnels.push(record);
            const ahead = input.rest();
            if (ahead.length) {
                record.fromClient.push(ahead);
                upstream.write(ahead);
            }
            socket.on('data', chunk => record.fromClient.push(chunk));
            upstream.on('data', chunk => record.fromTarget.push(chunk));
            socket.pipe(upstream);
            upstream.pipe(socket);
        });
        socket.on('close', () => upstream.destroy());
        upstream.on('close', () => socket.destroy());
    }

    const port = await listenOnLoopback(server);
    return {
        port,
        url: (scheme = 'socks5', userinfo = '') => `${scheme}://${userinfo ? `${userinfo}@` : ''}127.0.0.1:${port}`,
        requests,
        tunnels,
        close: closerOf(server, sockets)
    };
}
