// Proven by difference: every message of a seeded corpus (support/corpus.mjs) is built by
// nodemailer itself (its streamTransport, which runs the same mail composer and header
// plugins as its SMTP transport) and sent through this package to a local SMTP server;
// both are parsed with mailparser and compared: headers (Message-ID, Date, MIME-Version,
// boundaries and transfer encodings aside), text, html, every attachment (content hash,
// filename, content type, cid, disposition), the calendar parts, and the SMTP envelope.
// The differences this package makes on purpose are listed in the README ("Differences
// from nodemailer") and normalised away below, each with its reason.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import { simpleParser } from 'mailparser';
import { loadTransport } from './support/config.mjs';
import { makeCorpus } from './support/corpus.mjs';
import { startEnv } from './support/env.mjs';

const require = createRequire(import.meta.url);
const nodemailer = require('nodemailer');
const libmime = require('libmime');
const { createTransport } = loadTransport();

const SEED = Number(process.env.CORPUS_SEED || 20260707);
const COUNT = Number(process.env.CORPUS_SIZE || 320);

let env;
let transport;
const reference = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' });

before(async () => {
    env = await startEnv();
    transport = env.track(createTransport(env.config({ pool: true, maxConnections: 2, maxMessages: Infinity })));
});

after(async () => {
    await env.close();
});

const sha = bytes => crypto.createHash('sha256').update(bytes).digest('hex');

// Headers that differ by construction: generated ids and dates, the MIME skeleton.
const SKIPPED_HEADERS = new Set(['message-id', 'date', 'mime-version', 'content-transfer-encoding']);

function normaliseHeader(key, value) {
    if (value && typeof value === 'object' && Array.isArray(value.value)) {
        // Address lists: the addresses and names, not how they were quoted.
        return value.value.map(a => ({ address: a.address, name: a.name, group: a.group }));
    }
    if (value && typeof value === 'object' && 'value' in value && 'params' in value) {
        const { boundary: _boundary, ...params } = value.params;
        return { value: value.value, params };
    }
    if (value instanceof Date) {
        return value.getTime();
    }
    if (typeof value === 'string') {
        // mailparser leaves unknown headers encoded; both encodings of one text are equal.
        return libmime.decodeWords(value);
    }
    if (Array.isArray(value)) {
        return value.map(item => normaliseHeader(key, item));
    }
    return value;
}

function headers(parsed) {
    const out = {};
    for (const [key, value] of parsed.headers) {
        if (!SKIPPED_HEADERS.has(key)) {
            out[key] = normaliseHeader(key, value);
        }
    }
    return out;
}

function attachments(parsed) {
    return parsed.attachments.map(a => ({
        filename: a.filename,
        contentType: a.contentType,
        contentDisposition: a.contentDisposition,
        cid: a.cid,
        related: a.related,
        method: a.method,
        sha256: sha(a.content),
        size: a.size,
    }));
}

async function view(raw) {
    const parsed = await simpleParser(raw, { keepCidLinks: true });
    return {
        headers: headers(parsed),
        subject: parsed.subject,
        text: parsed.text,
        html: parsed.html,
        attachments: attachments(parsed),
    };
}

/** The paths where `ours` and `theirs` differ, each with both values (short). */
function differencesOf(ours, theirs, path = '') {
    const isObject = v => v !== null && typeof v === 'object';
    if (isObject(ours) && isObject(theirs)) {
        const keys = new Set([...Object.keys(ours), ...Object.keys(theirs)]);
        return [...keys].flatMap(key => differencesOf(ours[key], theirs[key], path ? `${path}.${key}` : key));
    }
    if (JSON.stringify(ours) === JSON.stringify(theirs)) {
        return [];
    }
    const show = v => (v === undefined ? 'undefined' : JSON.stringify(v).slice(0, 200));
    return [`${path}: ours ${show(ours)}, nodemailer ${show(theirs)}`];
}

// Content types this package takes from the maintained MIME table (mime_guess) where
// nodemailer's own table says otherwise: ours -> nodemailer's.
const TYPE_TABLE_DIFFERENCES = { 'text/xml': 'application/xml' };

/**
 * What nodemailer's build and this package's differ in on purpose (README, "Differences
 * from nodemailer"), made equal. `side` is 'ours' or 'nodemailer'.
 */
/** A message whose whole body is one attachment given as `raw`. */
function isOneRawPart(message) {
    const bodies = ['text', 'html', 'watchHtml', 'amp', 'icalEvent', 'alternatives'].filter(key => message[key]);
    const attachments = [].concat(message.attachments || []);
    return bodies.length === 0 && attachments.length === 1 && Boolean(attachments[0].raw);
}

function withoutIntendedDifferences(view, side, message) {
    if (isOneRawPart(message)) {
        // nodemailer sends such a part alone, as the whole message: no From, To or Subject.
        // This package keeps the message's header fields above the part.
        view = { ...view, headers: {}, subject: undefined };
    }
    const headers = { ...view.headers };
    // nodemailer's streamTransport keeps the Bcc header (keepBcc); its SMTP transport, like
    // this package, never sends it.
    if (side === 'nodemailer') {
        delete headers.bcc;
    }
    // nodemailer folds a long header at a tab and a reader then sees a space there; this
    // package keeps the tab.
    const tabless = value => (typeof value === 'string' ? value.replace(/\t/g, ' ') : value);
    for (const [key, value] of Object.entries(headers)) {
        headers[key] = Array.isArray(value) ? value.map(tabless) : tabless(value);
    }
    const subject = tabless(view.subject);
    // Generated cids (attachDataUrls) are random on both sides: numbered by appearance.
    let { html, text } = view;
    const cids = view.attachments.map(a => a.cid).filter(Boolean);
    const numbered = value =>
        typeof value === 'string' ? cids.reduce((out, cid, index) => out.split(`cid:${cid}`).join(`cid:#${index}`), value) : value;
    html = numbered(html);
    text = numbered(text);
    const attachments = view.attachments.map(a => ({
        ...a,
        cid: a.cid && cids.includes(a.cid) ? `#${cids.indexOf(a.cid)}` : a.cid,
        contentType: side === 'ours' ? TYPE_TABLE_DIFFERENCES[a.contentType] || a.contentType : a.contentType,
    }));
    return { ...view, subject, html, text, headers, attachments };
}

test(`a corpus of ${COUNT} messages (seed ${SEED}) parses the same as nodemailer's own build`, { timeout: 240_000 }, async () => {
    // Two identical copies: nodemailer changes some of the objects it is given.
    const corpus = makeCorpus(SEED, COUNT);
    const ours = makeCorpus(SEED, COUNT);
    assert.ok(corpus.length >= 300);
    const differences = [];
    // Sends overlap (the pool has two connections); each outcome is matched by Message-ID.
    const batch = 8;
    for (let start = 0; start < corpus.length; start += batch) {
        await Promise.all(
            corpus.slice(start, start + batch).map(async ({ fields, message }, offset) => {
                const index = start + offset;
                const where = `message ${index} (seed ${SEED}; fields ${fields.join(', ')})`;
                const id = `<differential-${index}@corpus.example>`;
                const fixed = { ...message, messageId: message.messageId || id };
                const expected = await reference.sendMail(fixed);
                let info;
                try {
                    info = await transport.sendMail({ ...ours[index].message, messageId: fixed.messageId });
                } catch (err) {
                    differences.push(`${where}: nodemailer builds it, this package fails: ${err.code} ${err.message}`);
                    return;
                }
                const bare = id => String(id || '').replace(/^<|>$/g, '');
                const received = env.smtp.messages.find(m => bare(m.parsed.messageId) === bare(info.messageId));
                if (!received) {
                    differences.push(`${where}: not received`);
                    return;
                }
                const found = differencesOf(
                    {
                        envelope: { from: received.envelope.from, to: received.envelope.to },
                        ...withoutIntendedDifferences(await view(received.raw), 'ours', ours[index].message),
                    },
                    {
                        envelope: { from: expected.envelope.from, to: expected.envelope.to },
                        ...withoutIntendedDifferences(await view(expected.message), 'nodemailer', ours[index].message),
                    }
                );
                if (found.length) {
                    differences.push(`${where}:\n  ${found.join('\n  ')}`);
                }
            })
        );
    }
    assert.deepEqual(differences, [], `${differences.length} of ${corpus.length} messages differ:\n${differences.slice(0, 40).join('\n')}`);
});
