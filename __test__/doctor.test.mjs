// The CLI (bin/smtp-oauth-transport.js) run as a child process, the way an administrator
// runs it, against the local token endpoint and SMTP server. Each case breaks one link of
// the chain and checks that the doctor names that step, shows the right fix, skips the rest,
// exits 1, and never prints the client secret or an access token.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeTestPki, makeUntrustedPki } from './support/certs.mjs';
import { runCli, stepMarks } from './support/cli.mjs';
import { TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_TENANT, TEST_USER } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { secretForms } from './support/errors.mjs';

const RCPT = 'rcpt@example.com';

let tmp;
before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp-oauth-doctor-'));
    fs.writeFileSync(path.join(tmp, 'ca.pem'), makeTestPki().caPem);
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let localJsCount = 0;
/** Writes a local.js exporting { mail } (JSON-able values only) and returns its path. */
function writeLocalJs(mail) {
    const file = path.join(tmp, `local-${++localJsCount}.js`);
    fs.writeFileSync(file, `module.exports = ${JSON.stringify({ mail }, null, 2)};\n`);
    return file;
}

/**
 * A local.js written like the product page's: the mailbox, tenant, client id and secret come
 * from TAS_SMTP_* env vars; the SMTP port, token URL and CA path come from TEST_* vars.
 */
function writeSeedLocalJs() {
    const file = path.join(tmp, `local-seed-${++localJsCount}.js`);
    fs.writeFileSync(
        file,
        `const fs = require('node:fs');
module.exports = {
  mail: {
    smtp: {
      type: 'oauth2',
      host: '127.0.0.1',
      port: Number(process.env.TEST_SMTP_PORT),
      auth: {
        user: process.env.TAS_SMTP_AUTH_USER,
      },
      tls: { ca: fs.readFileSync(process.env.TEST_CA_FILE, 'utf8'), servername: 'localhost' },
      oauth2: {
        host: process.env.TEST_TOKEN_ORIGIN + '/' + process.env.TAS_SMTP_OAUTH_TENANT_ID + '/oauth2/v2.0/token',
        grantType: 'client_credentials',
        clientSecret: process.env.TAS_SMTP_OAUTH_CLIENT_SECRET,
        clientId: process.env.TAS_SMTP_OAUTH_CLIENT_ID,
        scope: 'https://outlook.office365.com/.default',
      },
    },
  },
};
`
    );
    return file;
}

/** The seed's env vars for the test tenant, plus where the local servers are. */
function seedEnv(env, overrides = {}) {
    return {
        TAS_SMTP_AUTH_USER: TEST_USER,
        TAS_SMTP_OAUTH_TENANT_ID: TEST_TENANT,
        TAS_SMTP_OAUTH_CLIENT_ID: TEST_CLIENT_ID,
        TAS_SMTP_OAUTH_CLIENT_SECRET: TEST_CLIENT_SECRET,
        TEST_SMTP_PORT: String(env.smtp.port),
        TEST_TOKEN_ORIGIN: env.token.origin,
        TEST_CA_FILE: path.join(tmp, 'ca.pem'),
        ...overrides
    };
}

/** Asserts the doctor printed step `failed` as ✘, the ones before ✔ and the ones after as skipped. */
function assertFailedAt(stdout, failed) {
    const { marks } = stepMarks(stdout);
    const expected = {};
    for (let step = 1; step <= 6; step++) {
        expected[step] = step < failed ? '✔' : step === failed ? '✘' : '–';
    }
    assert.deepEqual(marks, expected, `step marks in:\n${stdout}`);
    for (let step = failed + 1; step <= 6; step++) {
        assert.match(stepMarks(stdout).lines[step], new RegExp(`skipped \\(step ${failed} failed\\)`));
    }
}

/** Neither the client secret nor any token the endpoint issued appears in the output. */
function assertNoSecrets(result, env, extraSecrets = []) {
    const text = `${result.stdout}\n${result.stderr}`;
    const forms = [...secretForms(TEST_CLIENT_SECRET), ...extraSecrets.flatMap(s => secretForms(s))];
    for (const token of env ? env.token.issued : []) {
        forms.push(...secretForms(token, { user: TEST_USER }));
        // a token's payload alone would also be a leak (it is the signed part)
        forms.push(token.split('.')[1]);
    }
    for (const form of forms) {
        assert.ok(!text.includes(form), 'a secret (client secret or access token) appears in the CLI output');
    }
}

async function withEnv(opts, fn) {
    const env = await startEnv(opts);
    try {
        return await fn(env);
    } finally {
        await env.close();
    }
}

describe('doctor: everything configured right', () => {
    test('every step ✔, the test message arrives, exit 0', () =>
        withEnv({}, async env => {
            const config = writeLocalJs({ smtp: env.config(), from: TEST_USER });
            const result = await runCli(['doctor', '--config', config, '--send-to', RCPT]);
            assert.equal(result.code, 0, result.stdout + result.stderr);
            const { marks, lines } = stepMarks(result.stdout);
            assert.deepEqual(marks, { 1: '✔', 2: '✔', 3: '✔', 4: '✔', 5: '✔', 6: '✔' }, result.stdout);
            assert.match(lines[3], /SMTP\.SendAsApp/);
            assert.match(lines[4], /STARTTLS TLSv1\.[23], certificate verified/);
            // the certificate is shown: subject, issuer, expiry
            assert.match(result.stdout, /certificate subject CN=localhost/);
            assert.match(result.stdout, /issuer CN=smtp-oauth-transport Test CA/);
            assert.match(result.stdout, /valid until \d{4}-\d\d-\d\dT/);
            assert.match(lines[6], /250 2\.6\.0/);
            assert.equal(env.smtp.messages.length, 1);
            assert.equal(env.smtp.messages[0].parsed.subject, 'smtp-oauth-transport doctor test');
            assert.deepEqual(env.smtp.messages[0].envelope, { from: TEST_USER, to: [RCPT] });
            assert.ok(env.smtp.connections.every(c => c.secure), 'the transport only authenticated over TLS');
            assert.ok(env.token.issued.length >= 1, 'a token was issued (so the leak check below means something)');
            assertNoSecrets(result, env);
        }));

    test('--json prints one JSON object with every step passed', () =>
        withEnv({}, async env => {
            const config = writeLocalJs({ smtp: env.config() });
            const result = await runCli(['doctor', '--config', config, '--send-to', RCPT, '--json']);
            assert.equal(result.code, 0, result.stdout + result.stderr);
            const report = JSON.parse(result.stdout);
            assert.equal(report.ok, true);
            assert.deepEqual(
                report.steps.map(s => [s.step, s.name, s.ok, s.status]),
                [
                    [1, 'config', true, 'pass'],
                    [2, 'token', true, 'pass'],
                    [3, 'claims', true, 'pass'],
                    [4, 'smtp', true, 'pass'],
                    [5, 'auth', true, 'pass'],
                    [6, 'send', true, 'pass']
                ]
            );
            for (const step of report.steps) {
                assert.equal(typeof step.finding, 'string');
                assert.ok('fix' in step && 'details' in step);
            }
            const [config1, token, claims, smtp, , send] = report.steps;
            assert.equal(config1.details.user, TEST_USER);
            assert.equal(config1.details.clientId, TEST_CLIENT_ID);
            assert.equal(config1.details.credential.kind, 'clientSecret');
            assert.match(config1.details.credential.description, /not shown/);
            assert.ok(!Number.isNaN(Date.parse(token.details.expiresAt)));
            assert.deepEqual(claims.details.roles, ['SMTP.SendAsApp']);
            assert.equal(claims.details.aud, 'https://outlook.office365.com');
            assert.equal(claims.details.tid, TEST_TENANT);
            assert.equal(smtp.details.starttls, true);
            assert.equal(smtp.details.certificate.verified, true);
            assert.match(smtp.details.certificate.issuer, /smtp-oauth-transport Test CA/);
            assert.deepEqual(smtp.details.authMechanisms, ['XOAUTH2']);
            assert.deepEqual(send.details.accepted, [RCPT]);
            assert.match(send.details.messageId, /^<.+@.+>$/);
            assert.equal(env.smtp.messages.length, 1);
            assert.ok(env.token.issued.length >= 1);
            assertNoSecrets(result, env);
        }));

    test('without --send-to, step 6 is not run and the exit code is still 0', () =>
        withEnv({}, async env => {
            const result = await runCli(['doctor', '--config', writeSeedLocalJs()], { env: seedEnv(env) });
            assert.equal(result.code, 0, result.stdout + result.stderr);
            const { marks, lines } = stepMarks(result.stdout);
            assert.deepEqual(marks, { 1: '✔', 2: '✔', 3: '✔', 4: '✔', 5: '✔', 6: '–' }, result.stdout);
            assert.match(lines[6], /--send-to/);
            assert.equal(env.smtp.messages.length, 0);
            assertNoSecrets(result, env);
        }));

    test('--env builds the product page config from TAS_SMTP_* (flags point it at the local servers)', () =>
        withEnv({}, async env => {
            const result = await runCli(envArgs(env), { env: seedEnv(env) });
            assert.equal(result.code, 0, result.stdout + result.stderr);
            assert.match(result.stdout, /configuration from environment/);
            assert.equal(env.token.requests.length, 1);
            assert.equal(env.token.requests[0].tenant, TEST_TENANT);
            assert.equal(env.token.requests[0].form.client_id, TEST_CLIENT_ID);
            assert.equal(env.token.requests[0].form.scope, 'https://outlook.office365.com/.default');
            assertNoSecrets(result, env);
        }));
});

/** doctor --env, with --token-url, --host, --port, --ca and --servername for the local servers. */
function envArgs(env, extra = []) {
    return [
        'doctor',
        '--env',
        '--token-url',
        env.token.url,
        '--host',
        '127.0.0.1',
        '--port',
        String(env.smtp.port),
        '--ca',
        path.join(tmp, 'ca.pem'),
        '--servername',
        'localhost',
        ...extra
    ];
}

describe('doctor: step 1, configuration', () => {
    test('--env with TAS_SMTP_OAUTH_CLIENT_SECRET unset names the env var; nothing is contacted', () =>
        withEnv({}, async env => {
            const vars = seedEnv(env);
            delete vars.TAS_SMTP_OAUTH_CLIENT_SECRET;
            const result = await runCli(envArgs(env), { env: vars });
            assert.equal(result.code, 1, result.stdout + result.stderr);
            assertFailedAt(result.stdout, 1);
            assert.match(stepMarks(result.stdout).lines[1], /TAS_SMTP_OAUTH_CLIENT_SECRET is not set/);
            assert.match(result.stdout, /fix: export TAS_SMTP_OAUTH_CLIENT_SECRET/);
            assert.equal(env.token.requests.length, 0, 'no token request without a secret');
            assert.equal(env.smtp.connections.length, 0);
            assertNoSecrets(result, env);
        }));

    test('--env with the secret and the client id unset lists both', () =>
        withEnv({}, async env => {
            const vars = seedEnv(env, { TAS_SMTP_OAUTH_CLIENT_ID: '' });
            delete vars.TAS_SMTP_OAUTH_CLIENT_SECRET;
            const result = await runCli([...envArgs(env), '--json'], { env: vars });
            assert.equal(result.code, 1);
            const report = JSON.parse(result.stdout);
            assert.equal(report.ok, false);
            assert.equal(report.steps[0].ok, false);
            assert.match(report.steps[0].finding, /TAS_SMTP_OAUTH_CLIENT_(SECRET|ID) is not set/);
            assert.match(report.steps[0].finding + report.steps[0].fix, /TAS_SMTP_OAUTH_CLIENT_SECRET/);
            assert.match(report.steps[0].finding + report.steps[0].fix, /TAS_SMTP_OAUTH_CLIENT_ID/);
            assert.deepEqual(
                report.steps.slice(1).map(s => s.status),
                ['skip', 'skip', 'skip', 'skip', 'skip']
            );
            assert.equal(env.token.requests.length, 0);
        }));

    test('--env with the tenant unset names TAS_SMTP_OAUTH_TENANT_ID (the URL would say "undefined")', async () => {
        const vars = { TAS_SMTP_AUTH_USER: TEST_USER, TAS_SMTP_OAUTH_CLIENT_ID: TEST_CLIENT_ID, TAS_SMTP_OAUTH_CLIENT_SECRET: TEST_CLIENT_SECRET };
        // No --token-url: the URL is built for login.microsoftonline.com. The doctor must stop
        // at step 1, before any network step; should it not, the proxy below (a closed local
        // port) keeps the request from leaving this machine.
        const proxy = 'http://127.0.0.1:9';
        const result = await runCli(['doctor', '--env', '--host', '127.0.0.1', '--port', '9'], {
            env: { ...vars, HTTPS_PROXY: proxy, https_proxy: proxy, ALL_PROXY: proxy }
        });
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assertFailedAt(result.stdout, 1);
        assert.match(stepMarks(result.stdout).lines[1], /TAS_SMTP_OAUTH_TENANT_ID is not set/);
        assertNoSecrets(result, null);
    });

    test('a product-page local.js run without TAS_SMTP_OAUTH_CLIENT_SECRET names the field and the env var', () =>
        withEnv({}, async env => {
            const vars = seedEnv(env);
            delete vars.TAS_SMTP_OAUTH_CLIENT_SECRET;
            const result = await runCli(['doctor', '--config', writeSeedLocalJs()], { env: vars });
            assert.equal(result.code, 1);
            assertFailedAt(result.stdout, 1);
            assert.match(stepMarks(result.stdout).lines[1], /mail\.smtp\.oauth2\.clientSecret is missing/);
            assert.match(result.stdout, /TAS_SMTP_OAUTH_CLIENT_SECRET, which is not set/);
            assert.equal(env.token.requests.length, 0);
        }));

    test('a product-page local.js run without TAS_SMTP_OAUTH_TENANT_ID (token URL ".../undefined/...") names the env var; no request', () =>
        withEnv({}, async env => {
            const vars = seedEnv(env);
            delete vars.TAS_SMTP_OAUTH_TENANT_ID;
            const result = await runCli(['doctor', '--config', writeSeedLocalJs()], { env: vars });
            assert.equal(result.code, 1, result.stdout + result.stderr);
            assertFailedAt(result.stdout, 1);
            assert.match(stepMarks(result.stdout).lines[1], /mail\.smtp\.oauth2\.host has no tenant: its tenant segment is 'undefined'/);
            assert.match(result.stdout, /TAS_SMTP_OAUTH_TENANT_ID, which is not set/);
            assert.equal(env.token.requests.length, 0);
        }));

    test('a malformed field is named (port "abc")', () =>
        withEnv({}, async env => {
            const config = writeLocalJs({ smtp: env.config({ port: 'abc' }) });
            const result = await runCli(['doctor', '--config', config]);
            assert.equal(result.code, 1);
            assertFailedAt(result.stdout, 1);
            assert.match(stepMarks(result.stdout).lines[1], /mail\.smtp\.port/);
            assert.match(result.stdout, /fix: fix mail\.smtp\.port in /);
            assertNoSecrets(result, env);
        }));

    test("oauth2 settings without type: 'oauth2' fail step 1 (they would be ignored)", () =>
        withEnv({}, async env => {
            const smtp = env.config();
            delete smtp.type;
            const result = await runCli(['doctor', '--config', writeLocalJs({ smtp })]);
            assert.equal(result.code, 1);
            assertFailedAt(result.stdout, 1);
            assert.match(stepMarks(result.stdout).lines[1], /mail\.smtp\.type is undefined, not 'oauth2'/);
            assert.match(result.stdout, /fix: add type: 'oauth2'/);
            assert.equal(env.token.requests.length, 0);
        }));

    test('a local.js that throws is a step 1 failure, not a crash', async () => {
        const file = path.join(tmp, 'broken-local.js');
        fs.writeFileSync(file, `throw new Error('boom from local.js');\n`);
        const result = await runCli(['doctor', '--config', file]);
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assertFailedAt(result.stdout, 1);
        assert.match(stepMarks(result.stdout).lines[1], /could not be loaded: boom from local\.js/);
    });
});

describe('doctor: step 2, token', () => {
    test('a wrong secret (AADSTS7000215) fails step 2 with the Value-vs-ID fix; SMTP is not contacted', () =>
        withEnv({}, async env => {
            const wrongSecret = 'Wq7~Secret.ID_not-the-Value_0123456789ab';
            const config = writeLocalJs({ smtp: env.config({ clientSecret: wrongSecret }) });
            const result = await runCli(['doctor', '--config', config, '--send-to', RCPT]);
            assert.equal(result.code, 1);
            assertFailedAt(result.stdout, 2);
            const line = stepMarks(result.stdout).lines[2];
            assert.match(line, /invalid_client/);
            assert.match(line, /AADSTS7000215/);
            assert.match(result.stdout, /fix: .*Value.*not its Secret ID/);
            assert.equal(env.token.requests.length, 1, 'the doctor asked once');
            assert.equal(env.smtp.connections.length, 0, 'no SMTP connection after a failed token');
            assertNoSecrets(result, env, [wrongSecret]);
        }));

    test('--json carries oauthError and the AADSTS codes', () =>
        withEnv({}, async env => {
            const config = writeLocalJs({ smtp: env.config({ clientId: '00000000-0000-0000-0000-000000000000' }) });
            const result = await runCli(['doctor', '--config', config, '--json']);
            assert.equal(result.code, 1);
            const step = JSON.parse(result.stdout).steps[1];
            assert.equal(step.ok, false);
            assert.equal(step.details.oauthError, 'unauthorized_client');
            assert.deepEqual(step.details.oauthErrorCodes, [700016]);
            assert.match(step.fix, /client id/i);
            assertNoSecrets(result, env);
        }));
});

describe('doctor: step 3, token claims', () => {
    test('a token without SMTP.SendAsApp fails step 3 with the admin-consent fix', () =>
        withEnv({ token: { claims: { roles: [] } } }, async env => {
            const config = writeLocalJs({ smtp: env.config() });
            const result = await runCli(['doctor', '--config', config]);
            assert.equal(result.code, 1);
            assertFailedAt(result.stdout, 3);
            assert.match(stepMarks(result.stdout).lines[3], /no SMTP\.SendAsApp role/);
            assert.match(result.stdout, /Grant admin consent/);
            assert.equal(env.smtp.connections.length, 0);
            assertNoSecrets(result, env);
        }));
});

describe('doctor: step 4, SMTP server and TLS', () => {
    test('a server without STARTTLS fails step 4; no AUTH is attempted', () =>
        withEnv({ smtp: { noStartTls: true } }, async env => {
            const config = writeLocalJs({ smtp: env.config() });
            const result = await runCli(['doctor', '--config', config, '--send-to', RCPT]);
            assert.equal(result.code, 1);
            assertFailedAt(result.stdout, 4);
            assert.match(stepMarks(result.stdout).lines[4], /does not offer STARTTLS/);
            assert.match(result.stdout, /fix: .*587/);
            assert.equal(env.smtp.authAttempts.length, 0, 'no credentials went over the plaintext connection');
            assertNoSecrets(result, env);
        }));

    test('a certificate from an untrusted CA fails step 4 and shows who issued it', () =>
        withEnv({ smtp: { pki: makeUntrustedPki() } }, async env => {
            const config = writeLocalJs({ smtp: env.config() });
            const result = await runCli(['doctor', '--config', config, '--send-to', RCPT]);
            assert.equal(result.code, 1);
            assertFailedAt(result.stdout, 4);
            const line = stepMarks(result.stdout).lines[4];
            assert.match(line, /not trusted/);
            assert.match(line, /Some Other CA/);
            assert.match(result.stdout, /fix: .*tls\.ca/);
            assert.match(result.stdout, /issuer CN=Some Other CA/);
            assert.equal(env.smtp.authAttempts.length, 0);
            assertNoSecrets(result, env);
        }));

    test('a certificate for another name fails step 4 with rustls\'s reason and names both', () =>
        withEnv({}, async env => {
            const config = writeLocalJs({ smtp: env.config({ tls: { servername: 'smtp.contoso.com' } }) });
            const result = await runCli(['doctor', '--config', config]);
            assert.equal(result.code, 1, result.stdout + result.stderr);
            assertFailedAt(result.stdout, 4);
            // The transport's own verdict (rustls), not a second opinion from node's OpenSSL.
            assert.match(stepMarks(result.stdout).lines[4], /not trusted: .*certificate not valid for name "smtp\.contoso\.com"/);
            assert.match(result.stdout, /certificate subject CN=localhost \(DNS:localhost, IP Address:127\.0\.0\.1\)/);
            assert.match(result.stdout, /fix: The certificate is issued for another name: .*tls\.servername/);
            assert.equal(env.smtp.authAttempts.length, 0);
        }));

    test('implicit TLS (secure: true) is checked from the first byte, no STARTTLS', () =>
        withEnv({ smtp: { implicitTls: true } }, async env => {
            const config = writeLocalJs({ smtp: env.config({ secure: true }) });
            const result = await runCli(['doctor', '--config', config, '--send-to', RCPT, '--json']);
            assert.equal(result.code, 0, result.stdout + result.stderr);
            const smtp = JSON.parse(result.stdout).steps[3];
            assert.equal(smtp.details.secure, true);
            assert.equal(smtp.details.starttls, undefined, 'no STARTTLS on an implicit-TLS port');
            assert.equal(smtp.details.certificate.verified, true);
            assert.match(smtp.finding, /implicit TLS TLSv1\.[23], certificate verified/);
            assert.equal(env.smtp.messages.length, 1);
            assertNoSecrets(result, env);
        }));

    test('a closed port fails step 4 with "refused the connection"', () =>
        withEnv({}, async env => {
            const port = env.smtp.port;
            await env.smtp.close();
            const config = writeLocalJs({ smtp: env.config() });
            assert.equal(env.config().port, port);
            const result = await runCli(['doctor', '--config', config]);
            assert.equal(result.code, 1);
            assertFailedAt(result.stdout, 4);
            assert.match(stepMarks(result.stdout).lines[4], /refused the connection/);
        }));
});

describe('doctor: step 5, AUTH XOAUTH2', () => {
    test('535 5.7.3 fails step 5 with New-ServicePrincipal and Add-MailboxPermission filled in', () =>
        withEnv({ smtp: { acceptAuth: () => false } }, async env => {
            const config = writeLocalJs({ smtp: env.config() });
            const result = await runCli(['doctor', '--config', config, '--send-to', RCPT]);
            assert.equal(result.code, 1);
            assertFailedAt(result.stdout, 5);
            assert.match(stepMarks(result.stdout).lines[5], /535 5\.7\.3/);
            assert.ok(
                result.stdout.includes(`New-ServicePrincipal -AppId "${TEST_CLIENT_ID}" -ServiceId "<ENTRA_OBJECT_ID>"`),
                result.stdout
            );
            assert.ok(
                result.stdout.includes(`Add-MailboxPermission -Identity "${TEST_USER}" -User "<ENTRA_OBJECT_ID>" -AccessRights FullAccess`),
                result.stdout
            );
            assert.match(result.stdout, /Enterprise Application/);
            assert.ok(env.smtp.authAttempts.length >= 1);
            assert.equal(env.smtp.messages.length, 0);
            assertNoSecrets(result, env);
        }));

    test('535 5.7.139 fails step 5 with Set-CASMailbox for the mailbox', () =>
        withEnv(
            {
                smtp: {
                    acceptAuth: () => false,
                    authRefusal: {
                        responseCode: 535,
                        message: '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.'
                    }
                }
            },
            async env => {
                const config = writeLocalJs({ smtp: env.config() });
                const result = await runCli(['doctor', '--config', config]);
                assert.equal(result.code, 1);
                assertFailedAt(result.stdout, 5);
                assert.match(stepMarks(result.stdout).lines[5], /SMTP AUTH is disabled/);
                assert.ok(
                    result.stdout.includes(`Set-CASMailbox -Identity "${TEST_USER}" -SmtpClientAuthenticationDisabled $false`),
                    result.stdout
                );
                assert.doesNotMatch(result.stdout, /New-ServicePrincipal/);
                assertNoSecrets(result, env);
            }
        ));
});

describe('doctor: step 6, test message', () => {
    test('550 5.7.60 (mail.from is not the mailbox) fails step 6 and says so', () =>
        withEnv({ smtp: { sendAsOnly: true } }, async env => {
            const from = 'noreply@example.com';
            const config = writeLocalJs({ smtp: env.config(), from });
            const result = await runCli(['doctor', '--config', config, '--send-to', RCPT]);
            assert.equal(result.code, 1, result.stdout + result.stderr);
            assertFailedAt(result.stdout, 6);
            assert.match(stepMarks(result.stdout).lines[6], /550 5\.7\.60/);
            assert.match(result.stdout, new RegExp(`mail\\.from \\(${from}\\) differs from the authenticated mailbox \\(${TEST_USER}\\)`));
            assert.match(result.stdout, /Add-RecipientPermission/);
            assert.equal(env.smtp.messages.length, 0);
            assert.deepEqual(
                env.smtp.mailFromAttempts.map(a => a.address),
                [from]
            );
            assertNoSecrets(result, env);
        }));
});

describe('usage', () => {
    test('usage errors exit 2', async () => {
        for (const args of [[], ['doctor'], ['doctor', '--config', path.join(tmp, 'nope.js')], ['doctor', '--env', '--bogus'], ['frobnicate', '--env'], ['send', '--env']]) {
            const result = await runCli(args);
            assert.equal(result.code, 2, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
            assert.match(result.stderr, /--help/);
        }
    });

    test('--help exits 0 and lists both commands', async () => {
        const result = await runCli(['--help']);
        assert.equal(result.code, 0);
        assert.match(result.stdout, /doctor/);
        assert.match(result.stdout, /send/);
        assert.match(result.stdout, /--send-to/);
    });
});

describe('send', () => {
    test('sends one message and prints info', () =>
        withEnv({}, async env => {
            const config = writeLocalJs({ smtp: env.config(), from: TEST_USER });
            const result = await runCli(['send', '--config', config, '--to', RCPT, '--subject', 'Zkouška č. 1', '--text', 'hello', '--html', '<p>hello</p>']);
            assert.equal(result.code, 0, result.stdout + result.stderr);
            assert.match(result.stdout, /messageId: <.+>/);
            assert.match(result.stdout, new RegExp(`accepted: ${RCPT}`));
            assert.match(result.stdout, /response: 250 /);
            assert.equal(env.smtp.messages.length, 1);
            assert.equal(env.smtp.messages[0].parsed.subject, 'Zkouška č. 1');
            assert.equal(env.smtp.messages[0].parsed.text.trim(), 'hello');
            assert.equal(env.smtp.messages[0].parsed.html.trim(), '<p>hello</p>');
            assertNoSecrets(result, env);
        }));

    test('--json, and a refusal exits 1 with the error code', () =>
        withEnv({ smtp: { acceptAuth: () => false } }, async env => {
            const config = writeLocalJs({ smtp: env.config() });
            const result = await runCli(['send', '--config', config, '--to', RCPT, '--json']);
            assert.equal(result.code, 1);
            const report = JSON.parse(result.stdout);
            assert.equal(report.ok, false);
            assert.equal(report.error.code, 'EAUTH');
            assert.equal(report.error.responseCode, 535);
            assertNoSecrets(result, env);
        }));
});
