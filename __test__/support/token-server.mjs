// A fake Entra ID (Azure AD) v2.0 token endpoint for the client_credentials grant.
//
// Serves POST /{tenant}/oauth2/v2.0/token on 127.0.0.1 and answers with the JSON shapes
// documented in /work/shared/reference/entra-exchange.md: a Bearer token on success,
// `{ error, error_description: "AADSTS...", error_codes: [...], ... }` on failure.
import crypto from 'node:crypto';
import http from 'node:http';
import { closerOf, listenOnLoopback, trackSockets } from './listen.mjs';

export const DEFAULT_TENANT = 'test-tenant';
export const DEFAULT_SCOPE = 'https://outlook.office365.com/.default';

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

function base64url(value) {
    return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/**
 * An Entra-shaped error body. Exported so tests with a custom handler can send other
 * errors (429, temporarily_unavailable, ...) in the same format.
 *
 * @param {string} error OAuth2 `error` value, e.g. 'invalid_client'
 * @param {number} code AADSTS number, e.g. 7000215
 * @param {string} text Human readable part of error_description
 */
export function entraErrorBody(error, code, text) {
    const traceId = crypto.randomUUID();
    const correlationId = crypto.randomUUID();
    const timestamp = new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
    return {
        error,
        error_description: `AADSTS${code}: ${text} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
        error_codes: [code],
        timestamp,
        trace_id: traceId,
        correlation_id: correlationId,
        error_uri: `https://login.microsoftonline.com/error?code=${code}`
    };
}

/**
 * Writes a JSON answer the way the fake endpoint does (exported for custom handlers).
 */
export function sendJson(res, status, body, extraHeaders = {}) {
    const payload = JSON.stringify(body);
    res.writeHead(status, {
        'Content-Type': 'application/json; charset=utf-8',
        'Content-Length': Buffer.byteLength(payload),
        'Cache-Control': 'no-store, no-cache',
        ...extraHeaders
    });
    res.end(payload);
}

// RFC 6749 2.3.1: with HTTP Basic the id and secret are form-urlencoded before base64.
function parseBasicAuth(header) {
    const match = /^Basic\s+(\S+)$/i.exec(header || '');
    if (!match) {
        return null;
    }
    const decoded = Buffer.from(match[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) {
        return null;
    }
    const unescape = s => decodeURIComponent(s.replace(/\+/g, ' '));
    try {
        return { clientId: unescape(decoded.slice(0, colon)), clientSecret: unescape(decoded.slice(colon + 1)) };
    } catch {
        return null;
    }
}

/**
 * Starts the fake token endpoint.
 *
 * @param {object} opts
 * @param {string} opts.clientId       the only client id the tenant knows
 * @param {string} opts.clientSecret   the secret Value of that client
 * @param {string} [opts.scope]        expected scope (default https://outlook.office365.com/.default)
 * @param {string} [opts.tenant]       tenant path segment (default 'test-tenant')
 * @param {number|string} [opts.expiresIn]  token lifetime in seconds; a string is sent as a
 *                                     JSON string ("3599"), as Entra sometimes does (default 3599)
 * @param {number} [opts.delayMs]      wait this long before answering every request
 * @param {object} [opts.claims]       extra/overriding JWT payload claims of issued tokens
 * @param {number|string} [opts.refreshIn]  if set, successful answers carry `refresh_in` (seconds)
 * @returns {Promise<TokenServer>}
 *
 * @typedef {object} TokenServer
 * @property {string} url        full token URL (http://127.0.0.1:PORT/test-tenant/oauth2/v2.0/token)
 * @property {string} origin     http://127.0.0.1:PORT
 * @property {number} port
 * @property {Array<{method:string,path:string,tenant:string|null,headers:object,form:object,basicAuth:object|null,at:number}>} requests
 *                               every request received, in order, whatever the answer was
 * @property {string[]} issued   access tokens handed out, in order
 * @property {Array<{token:string,issuedAt:number,expiresAt:number}>} grants  issued tokens with their lifetime
 * @property {() => string[]} liveTokens  issued tokens that have not expired yet
 * @property {(res: import('node:http').ServerResponse, grant?: {clientId?:string,claims?:object,expiresIn?:number|string,refreshIn?:number|string,accessToken?:string}) => string} respondWithToken
 *                               for custom handlers: issue a token (recorded in issued/grants like the
 *                               default ones, so the wired SMTP server accepts it) and send the 200 answer;
 *                               `accessToken` sends that (e.g. opaque) value instead of a JWT. Returns the token.
 * @property {(fn: Handler|null) => void} setHandler  replace the default behaviour
 *                               (null restores it). Handler: (req, form, res, next) where
 *                               next() runs the default behaviour (including the delay).
 * @property {() => Promise<void>} close
 */
export async function startTokenServer(opts = {}) {
    const tenant = opts.tenant || DEFAULT_TENANT;
    const expectedScope = opts.scope || DEFAULT_SCOPE;
    const expiresIn = opts.expiresIn === undefined ? 3599 : opts.expiresIn;

    const requests = [];
    const issued = [];
    const grants = [];
    let handler = null;
    let counter = 0;

    function issueToken(clientId, { claims = {}, lifetimeSeconds = expiresIn, accessToken } = {}) {
        counter += 1;
        const lifetime = Number(lifetimeSeconds);
        if (accessToken !== undefined) {
            issued.push(accessToken);
            grants.push({ token: accessToken, issuedAt: Date.now(), expiresAt: Date.now() + lifetime * 1000 });
            return accessToken;
        }
        const now = Math.floor(Date.now() / 1000);
        // Shaped like a real Exchange access token (a JWT) so that a transport that
        // decodes claims for diagnostics has something to decode. The signature is junk.
        const payload = {
            aud: 'https://outlook.office365.com',
            iss: `https://sts.windows.net/${tenant}/`,
            iat: now,
            nbf: now,
            exp: now + lifetime,
            appid: clientId,
            azp: clientId,
            roles: ['SMTP.SendAsApp'],
            tid: tenant,
            // unique per token, so that tests can tell which token was used for AUTH
            uti: `${counter}-${crypto.randomBytes(8).toString('hex')}`,
            ver: '1.0',
            ...(opts.claims || {}),
            ...claims
        };
        const token = [
            base64url({ typ: 'JWT', alg: 'RS256', x5t: 'test', kid: 'test' }),
            base64url(payload),
            crypto.randomBytes(32).toString('base64url')
        ].join('.');
        issued.push(token);
        grants.push({ token, issuedAt: Date.now(), expiresAt: Date.now() + lifetime * 1000 });
        return token;
    }

    // The behaviour of login.microsoftonline.com for the client_credentials grant,
    // reduced to the cases the tests need.
    async function defaultHandler(req, form, res, record) {
        if (opts.delayMs) {
            await sleep(opts.delayMs);
        }
        if (req.method !== 'POST') {
            return sendJson(res, 405, entraErrorBody('invalid_request', 900561, 'The endpoint only accepts POST requests.'));
        }
        if (!record.tenant) {
            return sendJson(res, 404, { error: 'not_found', error_description: `No such endpoint: ${record.path}` });
        }
        if (record.tenant !== tenant) {
            return sendJson(res, 400, entraErrorBody('invalid_request', 90002, `Tenant '${record.tenant}' not found.`));
        }
        if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] || '')) {
            return sendJson(
                res,
                400,
                entraErrorBody('invalid_request', 900144, "The request body must contain the following parameter: 'grant_type'.")
            );
        }
        if (form.grant_type !== 'client_credentials') {
            return sendJson(
                res,
                400,
                entraErrorBody('unsupported_grant_type', 70003, `The app requested an unsupported grant type '${form.grant_type}'.`)
            );
        }
        // The secret may come in the body or as HTTP Basic credentials.
        const clientId = form.client_id || (record.basicAuth && record.basicAuth.clientId);
        const clientSecret = form.client_secret !== undefined ? form.client_secret : record.basicAuth && record.basicAuth.clientSecret;
        if (clientId !== opts.clientId) {
            return sendJson(
                res,
                400,
                entraErrorBody(
                    'unauthorized_client',
                    700016,
                    `Application with identifier '${clientId}' was not found in the directory '${tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`
                )
            );
        }
        if (!clientSecret) {
            return sendJson(
                res,
                400,
                entraErrorBody(
                    'invalid_request',
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."
                )
            );
        }
        if (clientSecret !== opts.clientSecret) {
            return sendJson(
                res,
                401,
                entraErrorBody(
                    'invalid_client',
                    7000215,
                    `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`
                )
            );
        }
        if (form.scope !== expectedScope) {
            return sendJson(
                res,
                400,
                entraErrorBody(
                    'invalid_scope',
                    70011,
                    `The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope ${form.scope} is not valid.`
                )
            );
        }
        return respondWithToken(res, { clientId });
    }

    function respondWithToken(res, grant = {}) {
        const lifetime = grant.expiresIn === undefined ? expiresIn : grant.expiresIn;
        const refreshIn = grant.refreshIn === undefined ? opts.refreshIn : grant.refreshIn;
        const token = issueToken(grant.clientId === undefined ? opts.clientId : grant.clientId, {
            claims: grant.claims,
            lifetimeSeconds: lifetime,
            accessToken: grant.accessToken
        });
        sendJson(res, 200, {
            token_type: 'Bearer',
            expires_in: lifetime,
            ext_expires_in: lifetime,
            ...(refreshIn === undefined ? {} : { refresh_in: refreshIn }),
            access_token: token
        });
        return token;
    }

    const server = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', chunk => chunks.push(chunk));
        req.on('end', async () => {
            const body = Buffer.concat(chunks).toString('utf8');
            const form = Object.fromEntries(new URLSearchParams(body));
            const path = new URL(req.url, 'http://127.0.0.1').pathname;
            const match = /^\/([^/]+)\/oauth2\/v2\.0\/token\/?$/.exec(path);
            const record = {
                method: req.method,
                path,
                tenant: match ? decodeURIComponent(match[1]) : null,
                headers: { ...req.headers },
                body,
                form,
                basicAuth: parseBasicAuth(req.headers.authorization),
                at: Date.now()
            };
            requests.push(record);
            const next = () => defaultHandler(req, form, res, record);
            try {
                if (handler) {
                    await handler(req, form, res, next);
                } else {
                    await next();
                }
            } catch (err) {
                if (!res.headersSent) {
                    sendJson(res, 500, { error: 'server_error', error_description: `test token server: ${err.message}` });
                } else {
                    res.destroy(err);
                }
            }
        });
    });

    // Track sockets so close() can end keep-alive connections and never hangs the suite.
    const sockets = trackSockets(server);
    const port = await listenOnLoopback(server);
    const origin = `http://127.0.0.1:${port}`;

    return {
        url: `${origin}/${encodeURIComponent(tenant)}/oauth2/v2.0/token`,
        origin,
        port,
        tenant,
        requests,
        issued,
        grants,
        liveTokens: () => grants.filter(g => g.expiresAt > Date.now()).map(g => g.token),
        respondWithToken,
        setHandler(fn) {
            handler = fn || null;
        },
        close: closerOf(server, sockets)
    };
}

/**
 * A 127.0.0.1 port that nothing listens on (bound, then released). Good enough for a
 * "connection refused" test: nothing else in the suite binds ports in between.
 */
export async function closedPort() {
    const server = http.createServer();
    const port = await listenOnLoopback(server);
    await new Promise(resolve => server.close(resolve));
    return port;
}
