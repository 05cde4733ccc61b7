// A Microsoft Graph-shaped HTTPS server for the `api: 'graph'` tests, following the documented
// contract (learn.microsoft.com: user: sendMail, user: post messages, message: send,
// attachment: createUploadSession, "Attach large files to Outlook messages", throttling):
//
// - every /v1.0 request needs `Authorization: Bearer <token>`, a live token of the wired token
//   server whose claims say aud https://graph.microsoft.com and roles [Mail.Send]
//   (401 InvalidAuthenticationToken / 403 ErrorAccessDenied otherwise);
// - POST /v1.0/users/{user}/sendMail and POST /v1.0/users/{user}/messages take base64 MIME
//   with `Content-Type: text/plain`, at most 4 MB per request (413 beyond), and answer
//   202 (no body) / 201 with the draft's id; bad base64 is 400
//   ErrorMimeContentInvalidBase64String, a message without recipients 400 ErrorInvalidRecipients;
// - POST .../messages/{id}/attachments takes a fileAttachment under 3 MB; createUploadSession
//   answers an uploadUrl on this server, whose PUTs (no Authorization header) must come in order
//   with `Content-Range`, in chunks that are multiples of 320 KiB (the last excepted), at most
//   4 MB each; 200 with nextExpectedRanges, 201 for the last;
// - PATCH .../messages/{id} records extended properties, DELETE removes the draft,
//   POST .../messages/{id}/send answers 202;
// - GET /v1.0/users/{user} answers 403 Authorization_RequestDenied unless `userReadAll`.
// Every answer carries `request-id`. `setHandler((req, res, record, next) => ...)` scripts
// other answers (429 + Retry-After, 503, dropped connections).
import crypto from 'node:crypto';
import https from 'node:https';
import { makeTestPki } from './certs.mjs';
import { closerOf, listenOnLoopback, trackSockets } from './listen.mjs';

export const GRAPH_SCOPE = 'https://graph.microsoft.com/.default';
/** Claims of a token issued for Graph with the Mail.Send application permission. */
export const GRAPH_CLAIMS = { aud: 'https://graph.microsoft.com', roles: ['Mail.Send'] };
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;
export const UPLOAD_SESSION_FROM = 3 * 1024 * 1024;
export const CHUNK_UNIT = 320 * 1024;

/** Graph's error body. */
export function graphError(code, message) {
    return { error: { code, message, innerError: { 'request-id': crypto.randomUUID(), date: new Date().toISOString() } } };
}

function claimsOf(token) {
    try {
        return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
    } catch {
        return null;
    }
}

function isBase64(text) {
    return /^[A-Za-z0-9+/]*={0,2}$/.test(text) && text.length % 4 === 0;
}

function headerBlock(mime) {
    const text = mime.toString('utf8');
    const end = text.search(/\r?\n\r?\n/);
    return (end < 0 ? text : text.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
}

/**
 * @param {object} opts
 * @param {() => string[]} opts.validTokens  tokens the server accepts (token.liveTokens)
 * @param {string} opts.user                 the mailbox (userPrincipalName)
 * @param {{certPem:string,keyPem:string}} [opts.pki]  the certificate (default: the test CA's)
 * @param {boolean} [opts.userReadAll]       GET /users/{user} is allowed
 */
export async function startGraphServer(opts) {
    const pki = opts.pki || makeTestPki();
    const requests = [];
    /** Messages Graph accepted: { via, mime, attachments, saveToSentItems }. */
    const sent = [];
    const drafts = new Map();
    const sessions = new Map();
    let handler = null;
    let inFlight = 0;
    let maxInFlight = 0;
    let origin;

    function answer(res, status, body, headers = {}) {
        const payload = body === undefined ? '' : JSON.stringify(body);
        res.writeHead(status, {
            'request-id': crypto.randomUUID(),
            ...(payload ? { 'Content-Type': 'application/json' } : {}),
            'Content-Length': Buffer.byteLength(payload),
            ...headers
        });
        res.end(payload);
    }

    function readMime(req, res, record) {
        if (!/^text\/plain\b/i.test(req.headers['content-type'] || '')) {
            answer(res, 415, graphError('UnsupportedMediaType', 'MIME content must be sent as text/plain.'));
            return null;
        }
        if (record.body.length > MAX_REQUEST_BYTES) {
            answer(res, 413, graphError('RequestBodyTooLarge', 'The maximum request length supported is 4MB.'));
            return null;
        }
        const text = record.body.toString('latin1');
        if (!isBase64(text)) {
            answer(res, 400, graphError('ErrorMimeContentInvalidBase64String', 'Invalid base64 string for MIME content.'));
            return null;
        }
        return Buffer.from(text, 'base64');
    }

    function hasRecipients(mime) {
        return /^(to|cc|bcc):\s*\S/im.test(headerBlock(mime));
    }

    function json(record) {
        try {
            return JSON.parse(record.body.toString('utf8'));
        } catch {
            return null;
        }
    }

    async function defaultHandler(req, res, record) {
        const url = new URL(req.url, 'https://127.0.0.1');
        const upload = /^\/upload\/([^/]+)$/.exec(url.pathname);
        if (upload) {
            return uploadChunk(req, res, record, upload[1]);
        }
        const token = /^Bearer (\S+)$/.exec(req.headers.authorization || '');
        if (!token || !opts.validTokens().includes(token[1])) {
            return answer(res, 401, graphError('InvalidAuthenticationToken', 'Access token validation failure. Invalid audience.'));
        }
        const claims = claimsOf(token[1]) || {};
        if (claims.aud !== 'https://graph.microsoft.com' && claims.aud !== '00000003-0000-0000-c000-000000000000') {
            return answer(res, 401, graphError('InvalidAuthenticationToken', 'Access token validation failure. Invalid audience.'));
        }
        const match = /^\/v1\.0\/users\/([^/]+)(\/.*)?$/.exec(url.pathname);
        if (!match) {
            return answer(res, 400, graphError('BadRequest', `Resource not found for the segment '${url.pathname}'.`));
        }
        const user = decodeURIComponent(match[1]);
        const rest = match[2] || '';
        if (user !== opts.user) {
            return answer(res, 404, graphError('ErrorInvalidUser', `The requested user '${user}' is invalid.`));
        }
        if (req.method === 'GET' && rest === '') {
            return opts.userReadAll
                ? answer(res, 200, { id: crypto.randomUUID(), userPrincipalName: user })
                : answer(res, 403, graphError('Authorization_RequestDenied', 'Insufficient privileges to complete the operation.'));
        }
        if (!(claims.roles || []).includes('Mail.Send')) {
            return answer(res, 403, graphError('ErrorAccessDenied', 'Access is denied. Check credentials and try again.'));
        }
        if (req.method === 'POST' && rest === '/sendMail') {
            const mime = readMime(req, res, record);
            if (!mime) {
                return;
            }
            if (!hasRecipients(mime)) {
                return answer(res, 400, graphError('ErrorInvalidRecipients', "At least one recipient is not valid., A message can't be sent because it contains no recipients."));
            }
            sent.push({ via: 'sendMail', mime, attachments: [], saveToSentItems: true });
            return answer(res, 202);
        }
        if (req.method === 'POST' && rest === '/messages') {
            const mime = readMime(req, res, record);
            if (!mime) {
                return;
            }
            const id = `draft-${crypto.randomUUID()}`;
            drafts.set(id, { mime, attachments: [], deleteAfterSubmit: false });
            return answer(res, 201, { id, isDraft: true });
        }
        const draftMatch = /^\/messages\/([^/]+)(\/.*)?$/.exec(rest);
        const draft = draftMatch && drafts.get(draftMatch[1]);
        if (!draft) {
            return answer(res, 404, graphError('ErrorItemNotFound', 'The specified object was not found in the store.'));
        }
        const action = draftMatch[2] || '';
        if (req.method === 'POST' && action === '/attachments') {
            const body = json(record);
            const content = Buffer.from((body && body.contentBytes) || '', 'base64');
            if (!body || body['@odata.type'] !== '#microsoft.graph.fileAttachment' || content.length >= UPLOAD_SESSION_FROM) {
                return answer(res, 400, graphError('ErrorInvalidRequest', 'A fileAttachment under 3 MB is expected.'));
            }
            draft.attachments.push({ name: body.name, contentType: body.contentType, isInline: body.isInline, contentId: body.contentId, content });
            return answer(res, 201, { id: crypto.randomUUID() });
        }
        if (req.method === 'POST' && action === '/attachments/createUploadSession') {
            const item = (json(record) || {}).AttachmentItem;
            if (!item || item.attachmentType !== 'file' || !(item.size >= UPLOAD_SESSION_FROM)) {
                return answer(res, 400, graphError('ErrorInvalidRequest', 'AttachmentItem of a file of 3 MB or more is expected.'));
            }
            const id = crypto.randomUUID();
            sessions.set(id, { draft, item, received: [], next: 0, chunks: [] });
            return answer(res, 201, {
                uploadUrl: `${origin}/upload/${id}`,
                expirationDateTime: new Date(Date.now() + 3600e3).toISOString(),
                nextExpectedRanges: ['0-']
            });
        }
        if (req.method === 'PATCH' && action === '') {
            const body = json(record) || {};
            draft.deleteAfterSubmit = (body.singleValueExtendedProperties || []).some(p => p.id === 'Boolean 0x0E01' && p.value === 'true');
            return answer(res, 200, { id: draftMatch[1] });
        }
        if (req.method === 'DELETE' && action === '') {
            drafts.delete(draftMatch[1]);
            return answer(res, 204);
        }
        if (req.method === 'POST' && action === '/send') {
            if (!hasRecipients(draft.mime)) {
                return answer(res, 400, graphError('ErrorInvalidRecipients', "A message can't be sent because it contains no recipients."));
            }
            drafts.delete(draftMatch[1]);
            sent.push({ via: 'draft', mime: draft.mime, attachments: draft.attachments, saveToSentItems: !draft.deleteAfterSubmit });
            return answer(res, 202);
        }
        return answer(res, 405, graphError('ErrorInvalidRequest', `${req.method} ${rest} is not supported.`));
    }

    function uploadChunk(req, res, record, id) {
        const session = sessions.get(id);
        if (!session) {
            return answer(res, 404, graphError('ErrorItemNotFound', 'No such upload session.'));
        }
        if (req.headers.authorization) {
            // The upload URL is pre-authenticated; Microsoft says not to send a token to it.
            return answer(res, 400, graphError('ErrorInvalidRequest', 'Do not send an Authorization header to the upload URL.'));
        }
        const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(req.headers['content-range'] || '');
        const size = session.item.size;
        if (!range || Number(range[3]) !== size || Number(range[1]) !== session.next) {
            return answer(res, 416, graphError('InvalidRange', `Expected bytes starting at ${session.next}.`));
        }
        const length = Number(range[2]) - Number(range[1]) + 1;
        const last = Number(range[2]) === size - 1;
        if (record.body.length !== length || length > MAX_REQUEST_BYTES || (!last && length % CHUNK_UNIT !== 0)) {
            return answer(res, 400, graphError('InvalidRange', 'Chunks are multiples of 320 KiB, at most 4 MB, and match Content-Range.'));
        }
        session.received.push(record.body);
        session.chunks.push(length);
        session.next += length;
        if (!last) {
            return answer(res, 200, { nextExpectedRanges: [`${session.next}-`] });
        }
        sessions.delete(id);
        session.draft.attachments.push({
            name: session.item.name,
            contentType: session.item.contentType,
            isInline: session.item.isInline,
            contentId: session.item.contentId,
            content: Buffer.concat(session.received),
            chunks: session.chunks
        });
        return answer(res, 201, undefined, { Location: `${origin}/v1.0/users/${encodeURIComponent(opts.user)}/messages/x/attachments/${id}` });
    }

    const server = https.createServer({ key: pki.keyPem, cert: pki.certPem }, (req, res) => {
        const chunks = [];
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        req.on('data', chunk => chunks.push(chunk));
        req.on('end', async () => {
            const record = {
                method: req.method,
                path: new URL(req.url, 'https://127.0.0.1').pathname,
                headers: { ...req.headers },
                body: Buffer.concat(chunks),
                at: Date.now()
            };
            requests.push(record);
            const next = () => defaultHandler(req, res, record);
            try {
                await (handler ? handler(req, res, record, next) : next());
            } catch (err) {
                if (!res.headersSent) {
                    answer(res, 500, graphError('InternalServerError', `test Graph server: ${err.message}`));
                }
            } finally {
                // The answer has been written (handlers answer synchronously): the client can
                // not have it, nor send its next request, before this.
                inFlight -= 1;
            }
        });
    });
    const tlsErrors = [];
    server.on('tlsClientError', err => tlsErrors.push(err));
    const sockets = trackSockets(server);
    const port = await listenOnLoopback(server);
    origin = `https://127.0.0.1:${port}`;
    return {
        url: `${origin}/v1.0`,
        origin,
        port,
        requests,
        sent,
        drafts,
        tlsErrors,
        maxInFlight: () => maxInFlight,
        answer,
        setHandler(fn) {
            handler = fn || null;
        },
        close: closerOf(server, sockets)
    };
}
