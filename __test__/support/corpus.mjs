// A corpus of nodemailer messages generated from a seed, for the differential test: every
// message field alone and combined, Unicode everywhere, long lines, empty and large bodies,
// many attachments, inline images, calendar invitations. Same seed, same corpus: a failure
// names the seed and index, which rebuild the message exactly. To grow it, add a field
// generator to FIELDS (it gets the PRNG and returns the fields to add).
import { PNG } from './fixtures.mjs';

/** mulberry32: a small, fast, seedable PRNG; returns floats in [0, 1). */
export function prng(seed) {
    let state = seed >>> 0;
    return () => {
        state = (state + 0x6d2b79f5) >>> 0;
        let t = state;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

const pick = (rand, list) => list[Math.floor(rand() * list.length)];
const int = (rand, min, max) => min + Math.floor(rand() * (max - min + 1));
const chance = (rand, p) => rand() < p;

const WORDS = [
    'hello', 'invoice', 'Žluťoučký', 'kůň', 'naïve', 'café', 'Grüße', 'Überweisung', 'ĉapelo', 'Ελληνικά', 'русский',
    'עברית', 'العربية', '日本語', '中文', '한국어', 'emoji 🎉', '🐎', 'tab\there', 'quote"d', 'a=b', '=?utf-8?q?x?=',
    'semi;colon', 'comma,', '(paren)', '<angle>', 'back\\slash', 'dot.', '...', 'long-word-' + 'x'.repeat(40),
];
const NAMES = ['Ada Lovelace', 'Žofie Nováková', 'José Ñúñez', '山田 太郎', 'O\'Brien, Pat', 'Müller', 'Ünïcödé 🐴', ''];
const DOMAINS = ['example.com', 'example.org', 'contoso.com', 'mail.example.net'];

function words(rand, count) {
    return Array.from({ length: count }, () => pick(rand, WORDS)).join(' ');
}

function address(rand) {
    const local = pick(rand, ['alice', 'bob', 'carol', 'dave', 'eve', 'frank', 'grace', 'o.brien', 'first+tag']);
    const email = `${local}${int(rand, 1, 99)}@${pick(rand, DOMAINS)}`;
    const name = pick(rand, NAMES);
    switch (int(rand, 0, 2)) {
        case 0:
            return email;
        case 1:
            return { name, address: email };
        default:
            return name && !/[",<>()]/.test(name) ? `${name} <${email}>` : email;
    }
}

function addresses(rand, max) {
    const count = int(rand, 1, max);
    const list = Array.from({ length: count }, () => address(rand));
    return count === 1 && chance(rand, 0.5) ? list[0] : list;
}

/** Text with Unicode, blank lines, long lines (with and without spaces) and odd endings. */
function bodyText(rand) {
    switch (int(rand, 0, 6)) {
        case 0:
            return words(rand, int(rand, 1, 12));
        case 1:
            return Array.from({ length: int(rand, 2, 30) }, () => words(rand, int(rand, 0, 20))).join('\n');
        case 2:
            return words(rand, 400); // one long line with spaces
        case 3:
            return 'x'.repeat(int(rand, 900, 2500)) + '\nend'; // a long line without spaces
        case 4:
            return Array.from({ length: int(rand, 1, 10) }, () => words(rand, 5)).join('\r\n') + '\r\n';
        case 5:
            return `${words(rand, 20)}\n`.repeat(int(rand, 2000, 6000)); // a large body
        default:
            return '.\n..leading dots\n.\nFrom the start\n' + words(rand, 8);
    }
}

function html(rand, cids = []) {
    const images = cids.map(cid => `<img src="cid:${cid}" alt="${pick(rand, WORDS).replace(/"/g, '')}">`).join('');
    return `<html><body><h1>${words(rand, 3).replace(/[<>&]/g, '')}</h1><p>${bodyText(rand).replace(/[<>&]/g, '')}</p>${images}</body></html>`;
}

function bytes(rand, length) {
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i++) {
        out[i] = Math.floor(rand() * 256);
    }
    return out;
}

const FILE_NAMES = ['report.pdf', 'Überweisung 2026.pdf', 'photo.jpg', 'data.csv', 'notes.txt', 'archive.zip', 'invoice.xml',
    'résumé.docx', '日本語のファイル.txt', 'sheet.xlsx', 'image.png', 'page.html', 'data.json', 'a'.repeat(80) + '.txt'];
const CONTENT_TYPES = ['application/pdf', 'image/png', 'text/plain', 'text/csv', 'application/json', 'application/zip', 'image/jpeg'];

/** One attachment in one of nodemailer's forms. */
function attachment(rand, index) {
    const form = int(rand, 0, 12);
    const named = chance(rand, 0.8);
    const base = named ? { filename: pick(rand, FILE_NAMES) } : { contentType: pick(rand, CONTENT_TYPES) };
    switch (form) {
        case 0:
            return { ...base, content: bytes(rand, int(rand, 0, 3000)) };
        case 1:
            return { ...base, content: bodyText(rand) };
        case 2:
            return { ...base, content: bytes(rand, int(rand, 10, 500)).toString('base64'), encoding: 'base64' };
        case 3:
            return { ...base, content: bytes(rand, int(rand, 10, 200)).toString('hex'), encoding: 'hex' };
        case 4:
            return { path: `data:image/png;base64,${PNG.toString('base64')}`, ...(named ? { filename: `pixel-${index}.png` } : {}) };
        case 5:
            return { ...base, content: bytes(rand, int(rand, 70_000, 200_000)) }; // streamed as base64
        case 6:
            return { ...base, content: 'line one\nline two\n', contentDisposition: 'inline' };
        case 8:
            return { ...base, content: 'quoted: ' + words(rand, 12), contentTransferEncoding: 'quoted-printable' };
        case 9:
            return { filename: 'forwarded.eml', content: `From: a@example.com\r\nSubject: ${pick(rand, ['fwd', 'Grüße'])}\r\n\r\n${words(rand, 6)}\r\n` };
        case 10:
            return { raw: `Content-Type: text/plain; name="raw-${index}.txt"\r\nContent-Disposition: attachment; filename="raw-${index}.txt"\r\n\r\nraw part ${index}` };
        case 11:
            return { ...base, content: bytes(rand, int(rand, 1, 300)), filename: false, contentType: 'application/octet-stream' };
        default:
            return { ...base, content: 'utf-8 text: ' + words(rand, 10), headers: { 'X-Attachment-Note': words(rand, 3) } };
    }
}

const ICS = method =>
    [
        'BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//corpus//EN', `METHOD:${method}`, 'BEGIN:VEVENT',
        'UID:20260707T101112Z-1@example.com', 'DTSTAMP:20260707T101112Z', 'DTSTART:20260710T090000Z',
        'DTEND:20260710T100000Z', 'SUMMARY:Réunion – planning 📅', 'ORGANIZER;CN=Žofie:mailto:zofie@example.com',
        'ATTENDEE;RSVP=TRUE:mailto:bob@example.com', 'END:VEVENT', 'END:VCALENDAR', '',
    ].join('\r\n');

/** Field generators: each adds some fields to a message. */
const FIELDS = {
    cc: rand => ({ cc: addresses(rand, 3) }),
    bcc: rand => ({ bcc: addresses(rand, 3) }),
    replyTo: rand => ({ replyTo: address(rand) }),
    sender: rand => ({ sender: address(rand) }),
    text: rand => ({ text: bodyText(rand) }),
    html: rand => ({ html: html(rand) }),
    emptyText: () => ({ text: '' }),
    watchHtml: rand => ({ watchHtml: `<b>${words(rand, 3).replace(/[<>&]/g, '')}</b>` }),
    amp: rand => ({ amp: `<!doctype html><html ⚡4email><head></head><body>${words(rand, 4).replace(/[<>&]/g, '')}</body></html>` }),
    alternatives: rand => ({
        alternatives: [
            { contentType: 'text/x-web-markdown', content: `**${words(rand, 4)}**` },
            ...(chance(rand, 0.5) ? [{ path: `data:text/enriched,${encodeURIComponent(words(rand, 3))}` }] : []),
        ],
    }),
    bufferText: rand => ({ text: Buffer.from(bodyText(rand)) }),
    attachments: rand => ({ attachments: Array.from({ length: int(rand, 1, 6) }, (_, i) => attachment(rand, i)) }),
    manyAttachments: rand => ({ attachments: Array.from({ length: int(rand, 10, 25) }, (_, i) => attachment(rand, i)).filter(a => !(a.content && a.content.length > 60_000)) }),
    inlineImages: rand => {
        const cids = Array.from({ length: int(rand, 1, 3) }, (_, i) => `img${i}.${int(rand, 1, 999)}@corpus`);
        return {
            html: html(rand, cids),
            attachments: cids.map((cid, i) => ({ filename: `inline-${i}.png`, content: PNG, cid })),
        };
    },
    attachDataUrls: rand => ({
        attachDataUrls: true,
        html: `<p>${words(rand, 3).replace(/[<>&]/g, '')}</p><img src="data:image/png;base64,${PNG.toString('base64')}"><IMG alt="x" src='data:image/png;base64,${PNG.toString('base64')}'>`,
    }),
    icalEvent: rand => {
        const method = pick(rand, ['REQUEST', 'CANCEL', 'PUBLISH', 'REPLY']);
        return chance(rand, 0.5)
            ? { icalEvent: { method: method.toLowerCase(), content: ICS(method), ...(chance(rand, 0.5) ? { filename: 'meeting.ics' } : {}) } }
            : { icalEvent: { method, content: Buffer.from(ICS(method)).toString('base64'), encoding: 'base64' } };
    },
    headers: rand => ({
        headers: {
            'X-Corpus': words(rand, 4),
            'X-Tags': ['one', words(rand, 2)],
            'X-Number': int(rand, 0, 1000),
        },
    }),
    priority: rand => ({ priority: pick(rand, ['high', 'low', 'normal']) }),
    list: rand => ({
        list: {
            help: 'admin@example.com?subject=help',
            unsubscribe: [{ url: 'https://example.com/unsub?u=1', comment: pick(rand, ['Unsubscribe', 'Se désabonner']) }, 'unsub@example.com'],
            id: { url: 'corpus.example.com', comment: 'Corpus list' },
            archive: 'https://example.com/archive',
        },
    }),
    threading: rand => ({
        inReplyTo: `<thread-${int(rand, 1, 999)}@example.com>`,
        references: [`<r1-${int(rand, 1, 99)}@example.com>`, `r2-${int(rand, 1, 99)}@example.com`],
    }),
    messageId: rand => ({ messageId: `<corpus-${int(rand, 1, 1e6)}@example.com>` }),
    date: rand => ({ date: new Date(Date.UTC(2026, int(rand, 0, 11), int(rand, 1, 28), int(rand, 0, 23), int(rand, 0, 59))) }),
    xMailer: rand => ({ xMailer: `Corpus Mailer ${int(rand, 1, 9)}.0` }),
    envelope: rand => ({ envelope: { from: `bounce@${pick(rand, DOMAINS)}`, to: [`env${int(rand, 1, 9)}@example.com`] } }),
    encoding: rand => ({ encoding: pick(rand, ['base64', 'quoted-printable']) }),
    textEncoding: rand => ({ textEncoding: pick(rand, ['base64', 'quoted-printable']) }),
};

const FIELD_NAMES = Object.keys(FIELDS);

/**
 * `count` messages from `seed`: first each field alone (with a text body where it needs
 * one), then random combinations of 2 to 7 fields.
 */
export function makeCorpus(seed, count) {
    const rand = prng(seed);
    const messages = [];
    const base = () => ({ from: address(rand), to: addresses(rand, 3), subject: chance(rand, 0.9) ? words(rand, int(rand, 1, 12)) : '' });
    for (const name of FIELD_NAMES) {
        messages.push({ fields: [name], message: { ...base(), ...FIELDS[name](rand) } });
    }
    while (messages.length < count) {
        const chosen = new Set();
        const size = int(rand, 2, 7);
        while (chosen.size < size) {
            chosen.add(pick(rand, FIELD_NAMES));
        }
        const message = base();
        for (const name of chosen) {
            const fields = FIELDS[name](rand);
            // Combining two attachment lists keeps both.
            if (fields.attachments && message.attachments) {
                fields.attachments = [...message.attachments, ...fields.attachments];
            }
            Object.assign(message, fields);
        }
        messages.push({ fields: [...chosen], message });
    }
    return messages;
}
