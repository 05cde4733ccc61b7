// One token endpoint + one SMTP server wired together, which is what most tests need:
// the SMTP server accepts exactly the tokens the token server handed out and that have
// not expired yet, for TEST_USER.
import { tasConfig, TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_SCOPE, TEST_USER } from './config.mjs';
import { startSmtpServer } from './smtp-server.mjs';
import { startTokenServer } from './token-server.mjs';

/**
 * @param {object} [opts]
 * @param {object} [opts.token]  extra options for startTokenServer()
 * @param {object} [opts.smtp]   extra options for startSmtpServer()
 * @returns {Promise<{
 *   token: Awaited<ReturnType<typeof startTokenServer>>,
 *   smtp: Awaited<ReturnType<typeof startSmtpServer>>,
 *   config: (overrides?: object) => object,
 *   track: <T>(transport: T) => T,
 *   close: () => Promise<void>
 * }>}
 */
function withTimeout(promise, ms, message) {
    let timer;
    const timeout = new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(message)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** transport.close(), failing (instead of hanging the suite) if it does not settle in `ms`. */
export function closeWithin(transport, ms = 3000) {
    return withTimeout(Promise.resolve().then(() => transport.close()), ms, `transport.close() did not settle within ${ms} ms`);
}

export async function startEnv(opts = {}) {
    const token = await startTokenServer({
        clientId: TEST_CLIENT_ID,
        clientSecret: TEST_CLIENT_SECRET,
        scope: TEST_SCOPE,
        ...(opts.token || {})
    });
    let smtp;
    try {
        smtp = await startSmtpServer({
            user: TEST_USER,
            validTokens: () => token.liveTokens(),
            ...(opts.smtp || {})
        });
    } catch (err) {
        await token.close();
        throw err;
    }

    const transports = [];
    let closed;
    return {
        token,
        smtp,
        /** tasConfig() pointing at these servers; overrides are merged in. */
        config: (overrides = {}) => tasConfig({ smtpPort: smtp.port, tokenUrl: token.url, ...overrides }),
        /** Remember a transport so close() closes it before the servers. */
        track(transport) {
            transports.push(transport);
            return transport;
        },
        close() {
            if (!closed) {
                closed = (async () => {
                    // A close() that hangs or throws must not keep the servers (and so the
                    // test process) alive: close them anyway, then report the problem.
                    const problems = [];
                    for (const transport of transports) {
                        try {
                            await closeWithin(transport);
                        } catch (err) {
                            problems.push(err);
                        }
                    }
                    await Promise.all([smtp.close(), token.close()]);
                    if (problems.length) {
                        throw problems[0];
                    }
                })();
            }
            return closed;
        }
    };
}

/**
 * startEnv() for the test `t` (closed after it) with one transport on it:
 * `createTransport(env.config(config))`, closed before the servers.
 */
export async function setupTransport(t, createTransport, { token, smtp, config } = {}) {
    const env = await startEnv({ token, smtp });
    t.after(() => env.close());
    const transport = env.track(createTransport(env.config(config)));
    return { env, transport };
}
