// A fake managed identity endpoint on 127.0.0.1, in the shapes Azure documents:
//   imds        GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=...
//               header `Metadata: true`; answers expires_in and expires_on as strings
//   appService  GET /msi/token?api-version=2019-08-01&resource=...
//               header `X-IDENTITY-HEADER: <IDENTITY_HEADER>`; answers only expires_on
//   azureArc    GET /metadata/identity/oauth2/token?api-version=2019-11-01&resource=...
//               first answers 401 `WWW-Authenticate: Basic realm=<key file>`, then wants
//               `Authorization: Basic <key>`
// Tokens are canaries (CANARY_TOKEN...), so that leak checks find them.
import crypto from 'node:crypto';
import http from 'node:http';
import { CANARY_TOKEN } from './canary.mjs';
import { closerOf, listenOnLoopback, trackSockets } from './listen.mjs';
import { sendJson } from './token-server.mjs';

const PATHS = { imds: '/metadata/identity/oauth2/token', appService: '/msi/token', azureArc: '/metadata/identity/oauth2/token' };

/**
 * @param {object} opts
 * @param {'imds'|'appService'|'azureArc'} [opts.kind]
 * @param {string} [opts.identityHeader]  App Service's IDENTITY_HEADER
 * @param {string} [opts.arcRealm]        the key file an Arc endpoint names
 * @param {string} [opts.arcKey]          its content
 * @param {number} [opts.expiresIn]       token lifetime in seconds (default 3599)
 */
export async function startIdentityServer({ kind = 'imds', identityHeader, arcRealm, arcKey, expiresIn = 3599 } = {}) {
    const requests = [];
    const issued = [];
    let handler = null;
    const respondWithToken = res => {
        const token = `${CANARY_TOKEN}.mi.${issued.length + 1}.${crypto.randomBytes(6).toString('hex')}`;
        issued.push(token);
        const expiresOn = String(Math.floor(Date.now() / 1000) + expiresIn);
        const body = { access_token: token, expires_on: expiresOn, resource: 'https://outlook.office365.com', token_type: 'Bearer' };
        if (kind !== 'appService') {
            body.expires_in = String(expiresIn); // IMDS sends numbers as strings
        }
        sendJson(res, 200, body);
        return token;
    };
    const server = http.createServer((req, res) => {
        const url = new URL(req.url, 'http://127.0.0.1');
        const record = { method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers };
        requests.push(record);
        const next = () => defaultHandler(record, res);
        if (handler) {
            return handler(record, res, next);
        }
        return next();
    });
    const defaultHandler = (record, res) => {
        if (record.method !== 'GET' || record.path !== PATHS[kind]) {
            return sendJson(res, 404, { error: 'not_found', error_description: `no ${record.method} ${record.path}` });
        }
        if (kind === 'appService') {
            if (record.headers['x-identity-header'] !== identityHeader) {
                return sendJson(res, 401, { statusCode: 401, message: 'Unauthorized: X-IDENTITY-HEADER missing or wrong' });
            }
        } else if (record.headers.metadata !== 'true') {
            return sendJson(res, 400, { error: 'invalid_request', error_description: 'Required metadata header not specified' });
        }
        if (kind === 'azureArc' && record.headers.authorization !== `Basic ${arcKey}`) {
            res.writeHead(401, { 'WWW-Authenticate': `Basic realm=${arcRealm}` });
            return res.end();
        }
        return respondWithToken(res);
    };
    const sockets = trackSockets(server);
    const port = await listenOnLoopback(server);
    return {
        url: `http://127.0.0.1:${port}${PATHS[kind]}`,
        requests,
        issued,
        respondWithToken,
        /** (record, res, next) => void replaces the default behaviour; null restores it. */
        setHandler(fn) {
            handler = fn;
        },
        close: closerOf(server, sockets)
    };
}
