// Assertions on the errors the transport produces.
import assert from 'node:assert/strict';
import util from 'node:util';

/**
 * Everything an application could print or log about `value`: message, stack, String(),
 * JSON of all own properties (enumerable or not), util.inspect with hidden properties,
 * recursively through nested objects such as `cause` or `rejectedErrors`.
 */
export function exposedText(value) {
    const parts = [];
    const seen = new Set();
    const visit = (v, depth) => {
        if (v === null || v === undefined) {
            return;
        }
        if (typeof v !== 'object' && typeof v !== 'function') {
            parts.push(String(v));
            return;
        }
        if (seen.has(v) || depth > 6) {
            return;
        }
        seen.add(v);
        if (v instanceof Error) {
            parts.push(String(v), String(v.message), String(v.stack));
        }
        const own = {};
        for (const key of Object.getOwnPropertyNames(v)) {
            try {
                own[key] = v[key];
            } catch {
                // a throwing getter is not a leak
            }
        }
        try {
            parts.push(JSON.stringify(own));
        } catch {
            // circular or BigInt: the per-property walk below still covers it
        }
        parts.push(util.inspect(v, { depth: 6, showHidden: true, breakLength: Infinity }));
        for (const key of Object.getOwnPropertyNames(own)) {
            visit(own[key], depth + 1);
        }
        if (v instanceof Error && v.cause !== undefined && !Object.hasOwn(own, 'cause')) {
            visit(v.cause, depth + 1);
        }
    };
    visit(value, 0);
    return parts.join('\n');
}

/**
 * The forms a credential could leak in: as is, percent-encoded (form bodies), and,
 * when `user` is given, inside the base64 SASL blobs that carry it on the wire.
 */
export function secretForms(secret, { user, kind = 'token' } = {}) {
    const forms = new Set([secret, encodeURIComponent(secret), new URLSearchParams({ s: secret }).toString().slice(2)]);
    if (user !== undefined) {
        if (kind === 'token') {
            forms.add(Buffer.from(`user=${user}\x01auth=Bearer ${secret}\x01\x01`).toString('base64'));
        } else {
            forms.add(Buffer.from(`\x00${user}\x00${secret}`).toString('base64')); // AUTH PLAIN
            forms.add(Buffer.from(`${user}\x00${user}\x00${secret}`).toString('base64'));
            forms.add(Buffer.from(secret).toString('base64')); // AUTH LOGIN password line
        }
    }
    return [...forms];
}

/**
 * Asserts that none of the secrets appears anywhere in what `value` exposes.
 *
 * @param {unknown} value usually an Error
 * @param {Record<string, string[]|string>} secrets label -> secret (or list of forms)
 */
export function assertNoSecrets(value, secrets) {
    const text = exposedText(value);
    for (const [label, forms] of Object.entries(secrets)) {
        for (const form of [].concat(forms)) {
            if (!form) {
                continue;
            }
            // The message deliberately does not contain the secret itself.
            assert.ok(!text.includes(form), `the ${label} (or an encoded form of it) leaks into the error / its properties`);
        }
    }
}

/**
 * Asserts `err` is an Error with `code` among `codes`, with a readable failure message.
 */
export function assertCode(err, codes) {
    const list = [].concat(codes);
    assert.ok(err instanceof Error, `expected an Error, got ${util.inspect(err)}`);
    assert.ok(
        list.includes(err.code),
        `expected code ${list.join(' or ')}, got ${util.inspect(err.code)}: ${err.message}`
    );
}

/**
 * Awaits `promise`, expecting a rejection, and returns the rejection reason.
 * Fails if the promise resolves.
 */
export async function rejection(promise) {
    try {
        const value = await promise;
        assert.fail(`expected a rejection, but it resolved with ${util.inspect(value, { depth: 2 })}`);
    } catch (err) {
        if (err instanceof assert.AssertionError && /^expected a rejection/.test(err.message)) {
            throw err;
        }
        return err;
    }
}
