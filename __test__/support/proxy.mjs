// A small HTTP proxy on 127.0.0.1 for the token-request proxy tests (`oauth2.proxy`) and
// the SMTP proxy tests (`proxy`).
//
// - Plain forward proxying (`POST http://127.0.0.1:PORT/... HTTP/1.1`): forwarded to the
//   target, but only to loopback targets; anything else is answered 502 and recorded.
// - CONNECT (what an HTTPS client sends through a proxy): the target is recorded and then,
//   depending on `connect`:
//     'refuse'  answered `502 Bad Gateway` (nothing is connected anywhere);
//     'mitm'    answered `200 Connection Established`, and the tunnel is terminated right
//               here with a certificate (from the trusted test CA) for the requested name,
//               so the test can read the request; it is then forwarded to `upstream`, a
//               local server. The real target is never contacted.
//     'tunnel'  a loopback target (127.0.0.0/8, ::1 or `localhost`) is connected and piped
//               to, as a real proxy does, recording the bytes each way; any other target is
//               answered `502 Bad Gateway`.
// With `auth`, a CONNECT without that Proxy-Authorization is answered 407; with `tlsPki`,
// the proxy itself speaks TLS (an `https://` proxy).
// Nothing here ever opens a connection to a non-loopback address.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { closerOf, listenOnLoopback } from './listen.mjs';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/**
 * @param {object} [opts]
 * @param {'refuse'|'mitm'|'tunnel'} [opts.connect]  what to do with CONNECT (default 'refuse')
 * @param {{certPem:string,keyPem:string}} [opts.pki]  certificate presented in 'mitm' mode
 * @param {string} [opts.upstream]  origin (http://127.0.0.1:PORT) that decrypted requests go to
 * @param {string} [opts.auth]  'user:password' that CONNECT must carry as Proxy-Authorization Basic
 * @param {{certPem:string,keyPem:string}} [opts.tlsPki]  certificate of the proxy itself (https://)
 * @returns {Promise<TestProxy>}
 *
 * @typedef {object} TestProxy
 * @property {string} url          http://127.0.0.1:PORT (https:// with `tlsPki`; what `oauth2.proxy` is set to)
 * @property {number} port
 * @property {Array<{target:string,authorization:string|null,at:number}>} connects   every CONNECT, e.g.
 *                                 'login.microsoftonline.us:443', with its Proxy-Authorization header
 * @property {Array<{target:string,fromClient:Buffer[],fromTarget:Buffer[]}>} tunnels   'tunnel' mode: what
 *                                 went through each tunnel
 * @property {Array<{method:string,url:string,headers:object,forwarded:boolean,at:number}>} forwarded
 *                                 plain-HTTP proxy requests (absolute URLs)
 * @property {Array<{target:string,servername:string|null,method:string,path:string,headers:object,body:string,at:number}>} tunneled
 *                                 requests read inside 'mitm' tunnels
 * @property {() => Promise<void>} close
 */
export async function startProxy(opts = {}) {
    const mode = opts.connect || 'refuse';
    const connects = [];
    const forwarded = [];
    const tunneled = [];
    const tunnels = [];
    const sockets = new Set();
    const track = socket => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
        socket.on('error', () => {});
    };

    // Forwards `req` to a loopback origin and pipes the answer back. `body`, when given, is
    // the request body already read from `req` (which can then not be piped again).
    function forward(req, res, origin, path, body) {
        const target = new URL(path, origin);
        const headers = { ...req.headers, host: target.host };
        delete headers['proxy-connection'];
        delete headers['proxy-authorization'];
        if (body) {
            headers['content-length'] = String(body.length);
        }
        const upstreamReq = http.request(
            { hostname: target.hostname, port: target.port, path: target.pathname + target.search, method: req.method, headers },
            upstreamRes => {
                res.writeHead(upstreamRes.statusCode, upstreamRes.headers);
                upstreamRes.pipe(res);
            }
        );
        upstreamReq.on('error', err => {
            if (!res.headersSent) {
                res.writeHead(502, { 'Content-Type': 'text/plain' });
            }
            res.end(`test proxy: upstream failed: ${err.message}`);
        });
        if (body) {
            upstreamReq.end(body);
        } else {
            req.pipe(upstreamReq);
        }
    }

    // What arrives inside a terminated ('mitm') tunnel.
    const inner = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', chunk => chunks.push(chunk));
        req.on('end', () => {
            const body = Buffer.concat(chunks);
            tunneled.push({
                target: req.socket.proxyTarget,
                servername: req.socket.servername || null,
                method: req.method,
                path: req.url,
                headers: { ...req.headers },
                body: body.toString('utf8'),
                at: Date.now()
            });
            if (!opts.upstream) {
                res.writeHead(502, { 'Content-Type': 'text/plain' });
                return res.end('test proxy: no upstream');
            }
            forward(req, res, opts.upstream, req.url, body);
        });
    });

    const onRequest = (req, res) => {
        let url;
        try {
            url = new URL(req.url);
        } catch {
            res.writeHead(400, { 'Content-Type': 'text/plain' });
            return res.end('test proxy: expected an absolute URL');
        }
        const local = url.protocol === 'http:' && LOOPBACK.has(url.hostname);
        forwarded.push({ method: req.method, url: req.url, headers: { ...req.headers }, forwarded: local, at: Date.now() });
        if (!local) {
            res.writeHead(502, { 'Content-Type': 'text/plain' });
            return res.end('test proxy: only loopback targets are forwarded');
        }
        forward(req, res, url.origin, url.pathname + url.search);
    };
    const server = opts.tlsPki
        ? https.createServer({ key: opts.tlsPki.keyPem, cert: opts.tlsPki.certPem }, onRequest)
        : http.createServer(onRequest);
    server.on('connection', track);
    server.on('clientError', (err, socket) => socket.destroy());

    server.on('connect', (req, socket, head) => {
        const target = req.url;
        const authorization = req.headers['proxy-authorization'] || null;
        connects.push({ target, authorization, at: Date.now() });
        if (opts.auth && authorization !== `Basic ${Buffer.from(opts.auth).toString('base64')}`) {
            socket.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n');
            return;
        }
        if (mode === 'tunnel') {
            return tunnel(target, socket, head);
        }
        if (mode !== 'mitm') {
            socket.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
            return;
        }
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head && head.length) {
            socket.unshift(head);
        }
        const secure = new tls.TLSSocket(socket, {
            isServer: true,
            key: opts.pki.keyPem,
            cert: opts.pki.certPem,
            ALPNProtocols: ['http/1.1']
        });
        track(secure);
        secure.proxyTarget = target;
        secure.on('secure', () => inner.emit('connection', secure));
    });

    function tunnel(target, socket, head) {
        const colon = target.lastIndexOf(':');
        const host = target.slice(0, colon).replace(/^\[|\]$/g, '');
        const loopback = host === 'localhost' || host === '::1' || (net.isIPv4(host) && host.startsWith('127.'));
        if (!loopback) {
            socket.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n');
            return;
        }
        const record = { target, fromClient: [], fromTarget: [] };
        tunnels.push(record);
        const upstream = net.connect({ host: host === 'localhost' ? '127.0.0.1' : host, port: Number(target.slice(colon + 1)) });
        track(upstream);
        upstream.on('error', () => socket.destroy());
        upstream.on('connect', () => {
            socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
            if (head && head.length) {
                record.fromClient.push(Buffer.from(head));
                upstream.write(head);
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
    const closeServer = closerOf(server, sockets);

    return {
        url: `${opts.tlsPki ? 'https' : 'http'}://127.0.0.1:${port}`,
        port,
        connects,
        tunnels,
        forwarded,
        tunneled,
        close() {
            inner.close();
            return closeServer();
        }
    };
}
