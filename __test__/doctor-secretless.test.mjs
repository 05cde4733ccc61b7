// The doctor with credentials that are not secrets: a federated token file (chosen by Azure
// Workload Identity's environment variables) and a managed identity endpoint, both local. Step
// 1 names the credential and where it comes from; step 2 shows the assertion's decoded claims
// (never the assertion) and, when the endpoint refuses, the hint as data.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { assertNoLeak } from './support/canary.mjs';
import { runCli, stepMarks } from './support/cli.mjs';
import { tasConfig, TEST_CLIENT_ID, TEST_USER, withoutPath } from './support/config.mjs';
import { startEnv } from './support/env.mjs';
import { startIdentityServer } from './support/identity-server.mjs';
import { startSmtpServer } from './support/smtp-server.mjs';
import { closedPort, entraErrorBody, sendJson } from './support/token-server.mjs';

const T = { timeout: 30000 };
const ISSUER = 'https://oidc.cluster.example/doctor';
const SUBJECT = 'system:serviceaccount:mail:doctor';
const AUDIENCE = 'api://AzureADTokenExchange';

let tmp;
let count = 0;
before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp-oauth-doctor-secretless-'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function writeFile(name, content) {
    const file = path.join(tmp, `${++count}-${name}`);
    fs.writeFileSync(file, content);
    return file;
}

const writeLocalJs = smtp => writeFile('local.js', `module.exports = ${JSON.stringify({ mail: { smtp } }, null, 2)};\n`);

/** A projected service account token's shape: a JWT with the claims Entra ID matches. */
function federatedToken() {
    const part = value => Buffer.from(JSON.stringify(value)).toString('base64url');
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const signature = Buffer.from('CanaryDoctorAssertionSignature').toString('base64url');
    return `${part({ alg: 'RS256', kid: 'k1' })}.${part({ iss: ISSUER, sub: SUBJECT, aud: [AUDIENCE], exp })}.${signature}`;
}

/** The local servers, a token file, and a config with no credential nor client id. */
async function federatedEnv(t, refuse) {
    const env = await startEnv({});
    t.after(() => env.close());
    env.token.setHandler((_req, form, res) => {
        if (refuse) {
            return refuse(res);
        }
        return env.token.respondWithToken(res, { clientId: form.client_id });
    });
    const assertion = federatedToken();
    const file = writeFile('azure-identity-token', assertion);
    const smtp = withoutPath(withoutPath(env.config(), 'oauth2.clientSecret'), 'oauth2.clientId');
    const variables = { AZURE_FEDERATED_TOKEN_FILE: file, AZURE_CLIENT_ID: TEST_CLIENT_ID, AZURE_TENANT_ID: 'workload-tenant' };
    return { assertion, file, config: writeLocalJs(smtp), variables };
}

const forms = assertion => ({ assertion: [assertion, assertion.split('.')[2]] });

test('a federated token file from AZURE_FEDERATED_TOKEN_FILE: step 1 names the file and the variables, step 2 the assertion\'s claims', T, async t => {
    const { assertion, file, config, variables } = await federatedEnv(t);
    const text = await runCli(['doctor', '--config', config], { env: variables });
    assert.equal(text.code, 0, text.stdout + text.stderr);
    const { marks, lines } = stepMarks(text.stdout);
    assert.deepEqual(marks, { 1: '✔', 2: '✔', 3: '✔', 4: '✔', 5: '✔', 6: '–' }, text.stdout);
    assert.ok(lines[1].includes(`a federated token from the file ${file} (AZURE_FEDERATED_TOKEN_FILE)`), lines[1]);
    assert.ok(lines[1].includes('set by AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID'), lines[1]);
    assert.match(text.stdout, new RegExp(`assertion sent \\(decoded, not shown\\): iss ${ISSUER}, sub ${SUBJECT}, aud ${AUDIENCE}, exp \\w{3}, `));

    const json = await runCli(['doctor', '--config', config, '--json'], { env: variables });
    assert.equal(json.code, 0, json.stdout + json.stderr);
    const report = JSON.parse(json.stdout);
    const credential = report.steps[0].details.credential;
    assert.equal(credential.kind, 'clientAssertionFile');
    assert.equal(credential.source, `the file ${file} (AZURE_FEDERATED_TOKEN_FILE)`);
    assert.deepEqual(credential.environment, ['AZURE_FEDERATED_TOKEN_FILE', 'AZURE_CLIENT_ID']);
    assert.equal(credential.assertion, null, 'step 1 sends nothing: no assertion yet');
    const sent = report.steps[1].details.credential.assertion;
    assert.deepEqual({ ...sent, exp: undefined }, { iss: ISSUER, sub: SUBJECT, aud: AUDIENCE, exp: undefined });
    assert.ok(!Number.isNaN(Date.parse(sent.exp)), sent.exp);
    assertNoLeak(`${text.stdout}\n${text.stderr}\n${json.stdout}\n${json.stderr}`, forms(assertion), 'the doctor\'s output');
});

test('AADSTS70021 to a federated assertion: step 2 fails with oauth.federation_no_match, the claims as hint parameters', T, async t => {
    const { assertion, config, variables } = await federatedEnv(t, res =>
        sendJson(res, 400, entraErrorBody('invalid_request', 70021, 'No matching federated identity record found for presented assertion.'))
    );
    const result = await runCli(['doctor', '--config', config, '--json'], { env: variables });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    const token = JSON.parse(result.stdout).steps[1];
    assert.equal(token.status, 'fail');
    assert.equal(token.hint.id, 'oauth.federation_no_match');
    assert.deepEqual(token.hint.params, { iss: ISSUER, sub: SUBJECT, aud: AUDIENCE });
    assert.match(token.fix, /Federated credentials/);
    assert.ok(token.fix.includes(`The assertion sent: iss=${ISSUER}, sub=${SUBJECT}, aud=${AUDIENCE}, exp=`), token.fix);
    assert.equal(token.details.credential.assertion.sub, SUBJECT);
    assertNoLeak(`${result.stdout}\n${result.stderr}`, forms(assertion), 'the doctor\'s output');
});

/** A local managed identity endpoint (IMDS-shaped) and an SMTP server that accepts its tokens. */
async function identityEnv(t) {
    const identity = await startIdentityServer();
    t.after(() => identity.close());
    const smtp = await startSmtpServer({ user: TEST_USER, validTokens: () => identity.issued });
    t.after(() => smtp.close());
    const config = endpoint => {
        const base = tasConfig({ smtpPort: smtp.port, tokenUrl: 'unused' });
        const { host, clientId, clientSecret, ...rest } = base.oauth2;
        return writeLocalJs({ ...base, oauth2: { ...rest, managedIdentity: true, managedIdentityEndpoint: endpoint } });
    };
    return { identity, config };
}

test('a managed identity: step 1 names the endpoint and its kind, the token comes from it, AUTH passes', T, async t => {
    const { identity, config } = await identityEnv(t);
    const result = await runCli(['doctor', '--config', config(identity.url), '--json']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const report = JSON.parse(result.stdout);
    assert.deepEqual(report.steps.map(s => s.status), ['pass', 'pass', 'pass', 'pass', 'pass', 'skip']);
    const credential = report.steps[0].details.credential;
    assert.equal(credential.kind, 'managedIdentity');
    assert.equal(
        credential.source,
        `the imds managed identity endpoint ${identity.url} (chosen by mail.smtp.oauth2.managedIdentityEndpoint), system-assigned identity`
    );
    assert.deepEqual(credential.environment, []);
    assert.ok(report.steps[0].finding.includes(`a managed identity: the imds managed identity endpoint ${identity.url}`), report.steps[0].finding);
    assert.equal(identity.requests.length, 1, 'one token for the token step, the claims and AUTH');
    assertNoLeak(result.stdout + result.stderr, { token: identity.issued }, 'the doctor\'s output');
});

test('a managed identity endpoint that does not answer: step 2 fails with identity.unreachable', T, async t => {
    const { config } = await identityEnv(t);
    const port = await closedPort();
    const result = await runCli(['doctor', '--config', config(`http://127.0.0.1:${port}/metadata/identity/oauth2/token`), '--json']);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    const token = JSON.parse(result.stdout).steps[1];
    assert.equal(token.status, 'fail');
    assert.equal(token.hint.id, 'identity.unreachable');
    assert.equal(token.hint.params.endpoint, 'mail.smtp.oauth2.managedIdentityEndpoint');
    assert.match(token.fix, /is unreachable/);
});
