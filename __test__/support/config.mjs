// Configuration builders in the exact shape TAS uses for `config.mail.smtp`, plus the
// loader for the package under test.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { makeTestPki } from './certs.mjs';
import { DEFAULT_SCOPE, DEFAULT_TENANT } from './token-server.mjs';

export const TEST_USER = 'sender@example.com';
export const TEST_CLIENT_ID = '3f2a1c4e-7b9d-4e21-a6f0-0c5d8e9b1a22';
// Shaped like a real Entra secret Value (40 chars, with '~' '.' '_' '-'), so that a
// leak check also catches a percent-encoded copy ('~' is %7E in a form body).
export const TEST_CLIENT_SECRET = 'Qx8~Zt3.Lm_9vR-2kP7wN4sY6bH1cJ5dF0gT8uE';
export const TEST_PASSWORD = 'basic-P@ss w0rd!~secret';
export const TEST_TENANT = DEFAULT_TENANT;
export const TEST_SCOPE = DEFAULT_SCOPE;

/**
 * Absolute path of the package entry point: the repo root's transport.js.
 * SMTP_OAUTH_TRANSPORT_PATH overrides it, e.g. to check the suite itself against a
 * reference implementation (child processes honour it too).
 */
export const TRANSPORT_PATH =
    process.env.SMTP_OAUTH_TRANSPORT_PATH || fileURLToPath(new URL('../../transport.js', import.meta.url));

const isPlainObject = v => v !== null && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v);

/**
 * Merges `overrides` into `base` (both plain objects): nested plain objects are merged,
 * anything else (including an explicit `undefined`) replaces the base value. Returns a
 * new object; the inputs are not modified.
 */
export function merge(base, overrides) {
    const out = { ...base };
    for (const [key, value] of Object.entries(overrides || {})) {
        out[key] = isPlainObject(value) && isPlainObject(base[key]) ? merge(base[key], value) : value;
    }
    return out;
}

/** A deep copy of `config` and, in it, the object holding the field at `path` ('oauth2.clientId'). */
function copyToParent(config, path) {
    const copy = structuredClone(config);
    const keys = path.split('.');
    const last = keys.pop();
    let parent = copy;
    for (const key of keys) {
        parent = parent[key];
    }
    return { copy, parent, last };
}

/** A deep copy of `config` without the field at `path` ('oauth2.clientId'). */
export function withoutPath(config, path) {
    const { copy, parent, last } = copyToParent(config, path);
    delete parent[last];
    return copy;
}

/** A deep copy of `config` with the field at `path` set to `value` (may be undefined). */
export function withPath(config, path, value) {
    const { copy, parent, last } = copyToParent(config, path);
    parent[last] = value;
    return copy;
}

/**
 * `mail.smtp` for the OAuth2 (client_credentials + XOAUTH2) path, pointing at the test
 * servers. Any other key of the argument is merged over the result (see merge()), e.g.
 * `tasConfig({ smtpPort, tokenUrl, tls: { ca: undefined } })`.
 */
export function tasConfig({
    smtpPort,
    tokenUrl,
    user = TEST_USER,
    clientId = TEST_CLIENT_ID,
    clientSecret = TEST_CLIENT_SECRET,
    scope = TEST_SCOPE,
    ca = makeTestPki().caPem,
    ...overrides
} = {}) {
    const config = {
        type: 'oauth2',
        host: '127.0.0.1',
        port: smtpPort,
        auth: { user },
        tls: { ca, servername: 'localhost' },
        connectionTimeout: 5000,
        greetingTimeout: 5000,
        socketTimeout: 5000,
        oauth2: {
            host: tokenUrl,
            grantType: 'client_credentials',
            clientId,
            clientSecret,
            scope
        }
    };
    return merge(config, overrides);
}

/** `mail.smtp` for the basic (AUTH PLAIN/LOGIN) path: no `type`, `auth.pass` set. */
export function basicConfig({ smtpPort, user = TEST_USER, pass = TEST_PASSWORD, ca = makeTestPki().caPem, ...overrides } = {}) {
    const config = {
        host: '127.0.0.1',
        port: smtpPort,
        auth: { user, pass },
        tls: { ca, servername: 'localhost' },
        connectionTimeout: 5000,
        greetingTimeout: 5000,
        socketTimeout: 5000
    };
    return merge(config, overrides);
}

let transportModule;

/**
 * Loads the package under test (CommonJS, from the repo root) once per process.
 * Fails with a readable message while the native addon has not been built.
 *
 * @returns {{ createTransport: Function }}
 */
export function loadTransport() {
    if (!transportModule) {
        const require = createRequire(import.meta.url);
        try {
            transportModule = require(TRANSPORT_PATH);
        } catch (err) {
            const wrapped = new Error(
                `Cannot load the package under test from ${TRANSPORT_PATH} (build the addon first: npm run build): ${err.message}`
            );
            wrapped.cause = err;
            throw wrapped;
        }
    }
    return transportModule;
}
