// Canary credentials for the leak tests: values that appear nowhere else, so that finding
// one (or an encoded form of it) in an error, a log line, an inspection or a child's output
// proves a leak. The token server can be told to issue canary access tokens.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { TEST_CLIENT_ID, TEST_USER } from './config.mjs';
import { secretForms } from './errors.mjs';

// Shaped like an Entra secret Value: '~' becomes %7E in a form body, so the
// percent-encoded form differs from the raw one and both are searched for.
export const CANARY_SECRET = 'CanarySecret~9fQ.x7_Lm-2Zt8Wv4Rp6Yu1Io0Kj3Hg';
export const CANARY_PASSWORD = 'CanaryPassword~7 p@ss&w0rd=+/';
/** Every canary access token starts with this. */
export const CANARY_TOKEN = 'CanaryAccessToken~5Hq';

const base64 = text => Buffer.from(text).toString('base64');

/**
 * Makes `env.token` (see env.mjs) answer requests that carry `CANARY_SECRET` (and the test
 * client id) with canary
 * access tokens (`CANARY_TOKEN.<n>.<random>`); other requests get the default behaviour.
 * The wired SMTP server accepts the canary tokens like any issued one.
 */
export function issueCanaryTokens(env) {
    let n = 0;
    env.token.setHandler((req, form, res, next) => {
        if (form.client_secret !== CANARY_SECRET || form.client_id !== TEST_CLIENT_ID) {
            return next();
        }
        n += 1;
        return env.token.respondWithToken(res, { accessToken: `${CANARY_TOKEN}.${n}.${crypto.randomBytes(6).toString('hex')}` });
    });
}

/**
 * label -> forms of every credential that must not leak: the canary secret (raw,
 * percent-encoded, form-encoded, base64), every token `env.token` issued (raw, encoded, base64,
 * inside the base64 XOAUTH2 string for `user`) and the canary prefixes themselves.
 */
export function canaryForms(env, { user = TEST_USER, extra = {} } = {}) {
    const tokens = env ? env.token.issued : [];
    return {
        'client secret': [...secretForms(CANARY_SECRET), base64(CANARY_SECRET), 'CanarySecret'],
        password: [...secretForms(CANARY_PASSWORD, { user, kind: 'password' }), 'CanaryPassword'],
        'access token': [
            CANARY_TOKEN,
            ...tokens.flatMap(token => [...secretForms(token, { user, kind: 'token' }), base64(token), base64(`auth=Bearer ${token}`)])
        ],
        ...extra
    };
}

/**
 * Asserts that `text` holds no form of any credential in `secrets` (label -> forms).
 * The failure message names the label, where it was found, and the surrounding characters
 * with the secret itself cut out.
 */
export function assertNoLeak(text, secrets, where) {
    const leaks = findLeaks(text, secrets, where);
    if (leaks.length) {
        assert.fail(leaks.join('\n'));
    }
}

/** Like assertNoLeak, but returns the problems (one line each) instead of failing. */
export function findLeaks(text, secrets, where) {
    const leaks = [];
    for (const [label, forms] of Object.entries(secrets)) {
        for (const form of [].concat(forms)) {
            if (!form) {
                continue;
            }
            const at = text.indexOf(form);
            if (at >= 0) {
                const context = `${text.slice(Math.max(0, at - 80), at)}<<${label}>>${text.slice(at + form.length, at + form.length + 40)}`;
                leaks.push(`the ${label} (or an encoded form of it) leaks into ${where}: ...${JSON.stringify(context)}...`);
                break;
            }
        }
    }
    return leaks;
}

/**
 * A `logger` option (nodemailer's shape) that records every line.
 * `settle()` waits until lines sent from the native side have been delivered.
 */
export function captureLogger() {
    const lines = [];
    const logger = {};
    for (const level of ['debug', 'info', 'warn', 'error']) {
        logger[level] = (...args) => lines.push({ level, message: args.map(String).join(' ') });
    }
    return {
        logger,
        lines,
        text: () => lines.map(l => `${l.level}: ${l.message}`).join('\n'),
        settle: () => new Promise(resolve => setTimeout(resolve, 100))
    };
}
