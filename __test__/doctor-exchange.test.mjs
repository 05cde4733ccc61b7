// Microsoft's setups as they are in 2026, each against local servers that answer as Entra ID
// and Exchange Online do: the doctor (the CLI, as a child process) and the transport's own
// errors name the case and fill its PowerShell line in with the values they know. The rules
// live in the core (crates/core/src/hints.rs, exchange.rs); nothing here is a second copy.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeClientCertificate, makeUntrustedPki } from './support/certs.mjs';
import { runCli, stepMarks } from './support/cli.mjs';
import { basicConfig, loadTransport, TEST_CLIENT_ID, TEST_PASSWORD, TEST_TENANT, TEST_USER } from './support/config.mjs';
import { closeWithin, startEnv } from './support/env.mjs';
import { entraErrorBody, sendJson } from './support/token-server.mjs';

const { createTransport } = loadTransport();
const RCPT = 'rcpt@example.com';
const OTHER_SENDER = 'noreply@example.com';
// A closed local port behind a remote-DNS proxy: an Exchange host name configured in a test
// is never resolved nor reached, whatever the code does.
const NOWHERE = 'socks5h://127.0.0.1:9';

let tmp;
let count = 0;
before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp-oauth-doctor-exchange-'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function writeLocalJs(mail) {
    const file = path.join(tmp, `local-${++count}.js`);
    fs.writeFileSync(file, `module.exports = ${JSON.stringify({ mail }, null, 2)};\n`);
    return file;
}

async function withEnv(opts, fn) {
    const env = await startEnv(opts);
    try {
        return await fn(env);
    } finally {
        await env.close();
    }
}

/** The doctor's --json report. */
async function doctorJson(args, expectedCode) {
    const result = await runCli([...args, '--json']);
    assert.equal(result.code, expectedCode, result.stdout + result.stderr);
    return JSON.parse(result.stdout);
}

const statuses = report => report.steps.map(s => s.status);

describe('RBAC for Applications', () => {
    test('a token without SMTP.SendAsApp passes with --rbac (Exchange grants the mailbox, not the token)', () =>
        withEnv({ token: { claims: { roles: [] } } }, async env => {
            const config = writeLocalJs({ smtp: env.config() });
            const result = await runCli(['doctor', '--config', config, '--rbac']);
            assert.equal(result.code, 0, result.stdout + result.stderr);
            const { marks, lines } = stepMarks(result.stdout);
            assert.deepEqual(marks, { 1: '✔', 2: '✔', 3: '✔', 4: '✔', 5: '✔', 6: '–' }, result.stdout);
            assert.match(lines[3], /roles none,.*RBAC for Applications/);
        }));

    test('oauth2.rbac: true and a 535: the hint offers RBAC first, then the mailbox permission', () =>
        withEnv({ token: { claims: { roles: [] } }, smtp: { acceptAuth: () => false } }, async env => {
            const smtp = env.config();
            smtp.oauth2.rbac = true;
            const report = await doctorJson(['doctor', '--config', writeLocalJs({ smtp })], 1);
            assert.deepEqual(statuses(report), ['pass', 'pass', 'pass', 'pass', 'fail', 'skip']);
            const auth = report.steps[4];
            assert.equal(auth.hint.id, 'smtp.token_refused');
            assert.equal(auth.hint.params.rbac, 'true');
            assert.ok(auth.fix.includes("New-ManagementScope -Name \"SMTP senders\" -RecipientRestrictionFilter \"PrimarySmtpAddress -eq 'sender@example.com'\""), auth.fix);
            assert.ok(
                auth.fix.includes('New-ManagementRoleAssignment -Role \'Application SMTP.SendAsApp\' -App "<ENTRA_OBJECT_ID>" -CustomResourceScope "SMTP senders"'),
                auth.fix
            );
            assert.ok(auth.fix.indexOf('New-ManagementScope') < auth.fix.indexOf('Add-MailboxPermission'), auth.fix);
        }));
});

describe('sending as another address', () => {
    test('554 5.2.252 SendAsDenied: warned before sending, then Add-RecipientPermission filled in', () =>
        withEnv(
            {
                smtp: {
                    refuseMailFrom: (_i, address) =>
                        address === TEST_USER
                            ? null
                            : { responseCode: 554, message: `5.2.252 SendAsDenied; ${TEST_USER} not allowed to send as ${address}; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied` }
                }
            },
            async env => {
                const config = writeLocalJs({ smtp: env.config(), from: OTHER_SENDER });
                const result = await runCli(['doctor', '--config', config, '--send-to', RCPT]);
                assert.equal(result.code, 1, result.stdout + result.stderr);
                const { marks, lines } = stepMarks(result.stdout);
                assert.deepEqual(marks, { 1: '✔', 2: '✔', 3: '✔', 4: '✔', 5: '✔', 6: '✘' }, result.stdout);
                const warning = result.stdout.indexOf(`warning: mail.from (${OTHER_SENDER}) differs from the authenticated mailbox (${TEST_USER})`);
                assert.ok(warning > 0 && warning < result.stdout.indexOf(lines[2]), `the warning comes with step 1, before sending:\n${result.stdout}`);
                assert.match(lines[6], /554 5\.2\.252 SendAsDenied/);
                assert.ok(
                    result.stdout.includes(`fix: mail.from (${OTHER_SENDER}) differs`) &&
                        result.stdout.includes(`Add-RecipientPermission -Identity "${OTHER_SENDER}" -Trustee "${TEST_USER}" -AccessRights SendAs`),
                    result.stdout
                );
                assert.equal(env.smtp.messages.length, 0);
            }
        ));

    test("the transport's own error carries the same hint as data (hintId, hintParams)", () =>
        withEnv({ smtp: { sendAsOnly: true } }, async env => {
            const transport = env.track(createTransport(env.config()));
            const err = await transport.sendMail({ from: OTHER_SENDER, to: RCPT, subject: 's', text: 't' }).then(
                () => assert.fail('the server refuses another sender'),
                e => e
            );
            assert.equal(err.responseCode, 550);
            assert.equal(err.hintId, 'smtp.send_as_denied');
            assert.deepEqual(err.hintParams, { from: OTHER_SENDER, user: TEST_USER });
            assert.ok(err.hint.includes(`Add-RecipientPermission -Identity "${OTHER_SENDER}" -Trustee "${TEST_USER}"`), err.hint);
        }));
});

describe('certificate credentials and x5t', () => {
    const registered = makeClientCertificate({ commonName: 'doctor app certificate' });

    /** Entra ID refusing x5t#S256 (PS256) with AADSTS700027 while x5t (RS256) works. */
    function sha1Only(env) {
        env.token.setHandler((_req, form, res) => {
            const header = JSON.parse(Buffer.from(String(form.client_assertion).split('.')[0], 'base64url').toString());
            if (header['x5t#S256']) {
                return sendJson(res, 401, entraErrorBody('invalid_client', 700027, 'Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: ...]'));
            }
            assert.equal(header.alg, 'RS256');
            return env.token.respondWithToken(res, { clientId: form.client_id });
        });
    }

    test('AADSTS700027 to a PS256 x5t#S256 assertion: try oauth2.thumbprint (SHA-1); both thumbprints shown', () =>
        withEnv({}, async env => {
            sha1Only(env);
            const smtp = env.config();
            delete smtp.oauth2.clientSecret;
            smtp.oauth2.privateKey = registered.keyPkcs8Pem;
            smtp.oauth2.certificate = registered.certPem;
            const config = writeLocalJs({ smtp });
            const sha256 = registered.sha256.toString('hex').toUpperCase();
            const result = await runCli(['doctor', '--config', config]);
            assert.equal(result.code, 1, result.stdout + result.stderr);
            assert.match(stepMarks(result.stdout).lines[2], /AADSTS700027/);
            assert.ok(result.stdout.includes(`configured certificate thumbprints: SHA-1 ${registered.sha1Hex}, SHA-256 ${sha256}`), result.stdout);
            assert.match(result.stdout, /fix: .*x5t#S256, PS256.*set mail\.smtp\.oauth2\.thumbprint to the SHA-1 thumbprint/);
            assert.ok(result.stdout.includes(`SHA-1 ${registered.sha1Hex}, SHA-256 ${sha256}; the portal`), result.stdout);

            // What the hint says works: the SHA-1 thumbprint instead of the certificate.
            delete smtp.oauth2.certificate;
            smtp.oauth2.thumbprint = registered.sha1Hex;
            const fixed = await runCli(['doctor', '--config', writeLocalJs({ smtp })]);
            assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr);
        }));
});

describe('basic authentication retirement', () => {
    test('550 5.7.30 to AUTH PLAIN points to the OAuth2 config and Microsoft\'s schedule', () =>
        withEnv(
            {
                smtp: {
                    authMethods: ['PLAIN', 'LOGIN'],
                    password: TEST_PASSWORD,
                    acceptAuth: () => false,
                    authRefusal: { responseCode: 550, message: '5.7.30 Basic authentication is not supported for Client Submission' }
                }
            },
            async env => {
                const report = await doctorJson(['doctor', '--config', writeLocalJs({ smtp: basicConfig({ smtpPort: env.smtp.port }) })], 1);
                assert.deepEqual(statuses(report), ['pass', 'skip', 'skip', 'pass', 'fail', 'skip']);
                const auth = report.steps[4];
                assert.match(auth.finding, /basic authentication is retired .*550 5\.7\.30/);
                assert.equal(auth.hint.id, 'smtp.basic_auth_retired');
                assert.match(auth.fix, /type: 'oauth2', auth: \{ user: 'sender@example\.com' \}, oauth2: \{ tenantId, clientId, clientSecret \}/);
                assert.match(auth.fix, /end of December 2026.*second half of 2027/);
                assert.doesNotMatch(JSON.stringify(report), new RegExp(TEST_PASSWORD.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
            }
        ));
});

describe('High Volume Email', () => {
    test('an HVE host wants Mail.Send and Add-HVEAppAccess, not SMTP.SendAsApp; no SMTP traffic before', () =>
        withEnv({}, async env => {
            // The host is never reached: the claims step stops the walk. Should it not, the SMTP
            // connection goes to a closed local port through a socks5h:// proxy, which would
            // resolve the name (nothing here resolves it).
            const config = writeLocalJs({ smtp: env.config({ host: 'smtp.hve.mx.microsoft', proxy: NOWHERE }) });
            const report = await doctorJson(['doctor', '--config', config], 1);
            assert.deepEqual(statuses(report), ['pass', 'pass', 'fail', 'skip', 'skip', 'skip']);
            assert.equal(report.steps[0].details.hve, true);
            assert.equal(report.steps[0].details.requiredRole, 'Mail.Send');
            assert.ok(report.steps[0].warnings.some(w => w.id === 'exchange.hve_internal_only'));
            const claims = report.steps[2];
            assert.match(claims.finding, /no Mail\.Send role \(roles: SMTP\.SendAsApp\)/);
            assert.equal(claims.hint.id, 'claims.role_missing');
            assert.ok(claims.fix.includes(`Add-HVEAppAccess -Identity "${TEST_USER}" -AppIds "${TEST_CLIENT_ID}"`), claims.fix);
            assert.equal(env.smtp.connections.length, 0);
        }));
});

describe('service principal missing in the tenant', () => {
    test('AADSTS7000229: admin consent URL and New-MgServicePrincipal with the tenant and client id', () =>
        withEnv({}, async env => {
            env.token.setHandler((_req, _form, res) =>
                sendJson(res, 400, entraErrorBody('invalid_client', 7000229, `The client application ${TEST_CLIENT_ID} is missing service principal in the tenant ${TEST_TENANT}.`))
            );
            const report = await doctorJson(['doctor', '--config', writeLocalJs({ smtp: env.config() })], 1);
            const token = report.steps[1];
            assert.equal(token.status, 'fail');
            assert.deepEqual(token.details.oauthErrorCodes, [7000229]);
            assert.equal(token.hint.id, 'oauth.service_principal_missing');
            assert.ok(token.fix.includes(`https://login.microsoftonline.com/${TEST_TENANT}/adminconsent?client_id=${TEST_CLIENT_ID}`), token.fix);
            assert.ok(token.fix.includes(`New-MgServicePrincipal -AppId "${TEST_CLIENT_ID}"`), token.fix);
            assert.equal(env.smtp.connections.length, 0);
        }));
});

describe("Exchange's limits", () => {
    const refusing = (responseCode, message) => ({ smtp: { refuseMailFrom: () => ({ responseCode, message }) } });

    test('432 4.3.2 (more than 3 connections per mailbox) names maxConnections', () =>
        withEnv(refusing(432, '4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded'), async env => {
            const smtp = env.config({ maxRetries: 0 });
            const report = await doctorJson(['doctor', '--config', writeLocalJs({ smtp }), '--send-to', RCPT], 1);
            const send = report.steps[5];
            assert.equal(send.status, 'fail');
            assert.equal(send.hint.id, 'smtp.connection_limit');
            assert.match(send.fix, /3 concurrent connections per mailbox .*maxConnections to 3 or less/);
        }));

    test('a pool beyond 3 connections and 30 messages a minute for an Exchange host is warned about in step 1', () =>
        withEnv({}, async env => {
            // A wrong secret stops the walk at the token, before any SMTP traffic.
            const smtp = env.config({ host: 'smtp.office365.com', proxy: NOWHERE, pool: true, maxConnections: 5, clientSecret: 'not-the-secret-value' });
            const report = await doctorJson(['doctor', '--config', writeLocalJs({ smtp })], 1);
            assert.deepEqual(statuses(report), ['pass', 'fail', 'skip', 'skip', 'skip', 'skip']);
            const warnings = report.steps[0].warnings;
            assert.deepEqual(warnings.map(w => w.id), ['exchange.connections', 'exchange.rate']);
            assert.match(warnings[0].text, /maxConnections to 3 or less/);
            assert.match(warnings[1].text, /30 messages a minute .*rateLimit: 30/);
            assert.equal(env.smtp.connections.length, 0);
        }));

    test('554 5.2.0 SubmissionQuotaExceeded names the daily limit and rateLimit', () =>
        withEnv(refusing(554, '5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message'), async env => {
            const report = await doctorJson(['doctor', '--config', writeLocalJs({ smtp: env.config() }), '--send-to', RCPT], 1);
            const send = report.steps[5];
            assert.equal(send.hint.id, 'smtp.daily_limit');
            assert.match(send.fix, /10,000 recipients/);
            assert.match(send.fix, /mail\.smtp\.rateLimit/);
        }));
});

describe('one truth for transport and doctor', () => {
    test("a certificate the transport rejects fails the doctor's TLS step with the transport's own reason", () =>
        withEnv({ smtp: { pki: makeUntrustedPki() } }, async env => {
            const transport = createTransport(env.config());
            const err = await transport.verify().then(
                () => assert.fail('the transport trusts only the test CA'),
                e => e
            );
            await closeWithin(transport);
            assert.equal(err.code, 'ETLS');
            assert.match(err.message, /invalid peer certificate: UnknownIssuer/);
            const report = await doctorJson(['doctor', '--config', writeLocalJs({ smtp: env.config() })], 1);
            const smtp = report.steps[3];
            assert.equal(smtp.status, 'fail');
            assert.equal(smtp.finding, `the certificate of 127.0.0.1 is not trusted: ${err.message}`);
            assert.equal(smtp.details.certificate.error, err.message);
            assert.equal(smtp.details.certificate.verified, false);
            assert.match(smtp.details.certificate.issuer, /Some Other CA/);
            assert.equal(smtp.hint.id, 'tls.untrusted');
        }));

    test('the SMTP step reports DNS, the winning address and family, EHLO, TLS version and cipher, the chain', () =>
        withEnv({}, async env => {
            const report = await doctorJson(['doctor', '--config', writeLocalJs({ smtp: env.config({ host: 'localhost' }) })], 0);
            const { details } = report.steps[3];
            assert.ok(details.dns.a.includes('127.0.0.1') || details.dns.aaaa.includes('::1'), JSON.stringify(details.dns));
            assert.match(details.tcp.family, /^IPv[46]$/);
            assert.ok([...details.dns.a, ...details.dns.aaaa].some(ip => details.tcp.address.includes(ip)));
            assert.match(details.greeting, /^220 /);
            assert.ok(details.ehlo.includes('STARTTLS'), JSON.stringify(details.ehlo));
            assert.equal(details.starttls, true);
            assert.match(details.tls.version, /^TLSv1\.[23]$/);
            assert.match(details.tls.cipherSuite, /^TLS/);
            assert.ok(details.certificate.chain.length >= 1);
            assert.match(details.certificate.subject, /CN=localhost/);
            assert.equal(typeof report.steps[1].details.requestMs, 'number');
        }));

    test('a refused token: err.hint of the transport and the doctor fix are the same, filled in', () =>
        withEnv({ smtp: { acceptAuth: () => false } }, async env => {
            const transport = createTransport(env.config());
            const err = await transport.verify().then(
                () => assert.fail('refused'),
                e => e
            );
            await closeWithin(transport);
            assert.equal(err.hintId, 'smtp.token_refused');
            assert.equal(err.hintParams.user, TEST_USER);
            const report = await doctorJson(['doctor', '--config', writeLocalJs({ smtp: env.config() })], 1);
            assert.equal(report.steps[4].fix, err.hint);
            assert.deepEqual(report.steps[4].hint, { id: err.hintId, params: err.hintParams, text: err.hint });
        }));
});
