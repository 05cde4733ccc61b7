// DATA against BDAT (RFC 3030 CHUNKING) for one message with a 25 MiB attachment, sent by
// this package to Postfix (smtp-server, the main sink, offers no CHUNKING): one listener
// offers CHUNKING, the other hides it, so the same client sends the same message once as
// BDAT chunks (`chunking: true`) and once dot-stuffed after DATA. Part of `npm run bench` (run.mjs); alone with
// `npm run bench -- --chunking-only`. Needs root and Debian's postfix.
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { startPostfix } from '../__test__/support/postfix.mjs';

const require = createRequire(import.meta.url);

const median = values => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
};

/** @returns {Promise<{ attachmentBytes: number, rounds: number, dataMs: number, bdatMs: number, dataMinMs: number, bdatMinMs: number, dataRuns: number[], bdatRuns: number[] }>} */
export async function measureChunking({ root, rounds, attachmentBytes }) {
    const { createTransport } = require(`${root}/transport.js`);
    const postfix = await startPostfix({ bdat: '', data: '-o smtpd_discard_ehlo_keywords=chunking' });
    const message = {
        from: 'bench@example.com',
        to: 'rcpt@example.net',
        subject: 'DATA or BDAT',
        text: 'A 25 MiB attachment.',
        attachments: [{ filename: 'big.bin', content: crypto.randomBytes(attachmentBytes) }]
    };
    const runs = { data: [], bdat: [] };
    try {
        const transports = {
            data: createTransport({ host: '127.0.0.1', port: postfix.ports.data, maxRetries: 0, chunking: true }),
            bdat: createTransport({ host: '127.0.0.1', port: postfix.ports.bdat, maxRetries: 0, chunking: true })
        };
        // One unrecorded send each (Postfix starts its smtpd and cleanup processes).
        for (const kind of ['data', 'bdat']) {
            await transports[kind].sendMail(message);
        }
        for (let i = 0; i < rounds; i++) {
            for (const kind of i % 2 ? ['bdat', 'data'] : ['data', 'bdat']) {
                const start = performance.now();
                await transports[kind].sendMail(message);
                runs[kind].push(Math.round(performance.now() - start));
            }
        }
        await Promise.all(Object.values(transports).map(t => t.close()));
        const sessions = postfix.log().split('\n').filter(l => /disconnect from/.test(l));
        if (!sessions.some(l => /bdat=/.test(l)) || !sessions.some(l => /data=/.test(l))) {
            throw new Error(`expected both DATA and BDAT sessions in the Postfix log:\n${sessions.join('\n')}`);
        }
    } finally {
        await postfix.stop();
    }
    return {
        attachmentBytes,
        rounds,
        dataMs: median(runs.data),
        bdatMs: median(runs.bdat),
        dataMinMs: Math.min(...runs.data),
        bdatMinMs: Math.min(...runs.bdat),
        dataRuns: runs.data,
        bdatRuns: runs.bdat
    };
}
