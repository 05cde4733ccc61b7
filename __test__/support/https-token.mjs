// An https:// front for the fake token endpoint: TLS with a chosen certificate, then the
// request is answered by the wired token server (so its tokens are accepted by the SMTP
// server). With an untrusted or expired certificate no request should ever arrive:
// `requests` stays empty and `tlsErrors` records the refused handshakes.
import https from 'node:https';
import { closerOf, listenOnLoopback, trackSockets } from './listen.mjs';

/**
 * @param {object} tokenServer   from startTokenServer() (or env.token)
 * @param {{certPem:string,keyPem:string}} pki  the certificate the front presents
 * @returns {Promise<{url:string,port:number,requests:Array<{path:string,body:string}>,tlsErrors:Error[],close:()=>Promise<void>}>}
 */
export async function startHttpsTokenFront(tokenServer, pki) {
    const requests = [];
    const tlsErrors = [];
    const server = https.createServer({ key: pki.keyPem, cert: pki.certPem }, (req, res) => {
        const chunks = [];
        req.on('data', chunk => chunks.push(chunk));
        req.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            requests.push({ path: req.url, body });
            // The answer of the wired token server, as if it had been asked itself.
            tokenServer.respondWithToken(res);
        });
    });
    server.on('tlsClientError', err => tlsErrors.push(err));
    const sockets = trackSockets(server);
    const port = await listenOnLoopback(server);
    return {
        port,
        url: `https://127.0.0.1:${port}/${encodeURIComponent(tokenServer.tenant)}/oauth2/v2.0/token`,
        requests,
        tlsErrors,
        close: closerOf(server, sockets)
    };
}
