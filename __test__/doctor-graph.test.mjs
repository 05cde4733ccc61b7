// The doctor with `api: 'graph'`: after the token, the claims are Graph's (audience Graph, role
// Mail.Send) and the mailbox is looked up with GET /users/{user}; no SMTP step runs, and
// --send-to sends through Graph. Against the local Graph-shaped HTTPS server
// (support/graph-server.mjs) and token endpoint, the CLI run as a child process.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { makeTestPki } from './support/certs.mjs';
import { runCli, stepMarks } from './support/cli.mjs';
import { TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_USER } from './support/config.mjs';
import { GRAPH_CLAIMS, GRAPH_SCOPE, startGraphServer } from './support/graph-server.mjs';
import { startTokenServer } from './support/token-server.mjs';

const T = { timeout: 30000 };
const RCPT = 'rcpt@example.com';

let tmp;
let count = 0;
let token;
const graphs = [];

before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp-oauth-doctor-graph-'));
    token = await startTokenServer({ clientId: TEST_CLIENT_ID, clientSecret: TEST_CLIENT_SECRET, scope: GRAPH_SCOPE, claims: GRAPH_CLAIMS });
});

after(async () => {
    await Promise.all(graphs.map(graph => graph.close()));
    await token.close();
    fs.rmSync(tmp, { recursive: true, force: true });
});

/** A Graph server (GET /users/{user} allowed when `userReadAll`) and a local.js for it. */
async function graphEnv({ userReadAll = true, user = TEST_USER } = {}) {
    const graph = await startGraphServer({ validTokens: () => token.liveTokens(), user: TEST_USER, userReadAll });
    graphs.push(graph);
    const smtp = {
        type: 'oauth2',
        api: 'graph',
        graphUrl: graph.url,
        auth: { user },
        connectionTimeout: 5000,
        socketTimeout: 10000,
        oauth2: { host: token.url, clientId: TEST_CLIENT_ID, clientSecret: TEST_CLIENT_SECRET, ca: makeTestPki().caPem }
    };
    const file = path.join(tmp, `local-${++count}.js`);
    fs.writeFileSync(file, `module.exports = ${JSON.stringify({ mail: { smtp } }, null, 2)};\n`);
    return { graph, config: file };
}

async function doctorJson(args, expectedCode) {
    const result = await runCli([...args, '--json']);
    assert.equal(result.code, expectedCode, result.stdout + result.stderr);
    return JSON.parse(result.stdout);
}

test('api: graph: config, token, Graph claims, the mailbox, and --send-to through Graph; no SMTP step', T, async t => {
    const { graph, config } = await graphEnv();
    const text = await runCli(['doctor', '--config', config, '--send-to', RCPT]);
    assert.equal(text.code, 0, text.stdout + text.stderr);
    const { marks, lines } = stepMarks(text.stdout);
    assert.deepEqual(marks, { 1: '✔', 2: '✔', 3: '✔', 4: '✔', 5: '✔' }, text.stdout);
    assert.ok(lines[1].includes(`${TEST_USER} via Microsoft Graph ${graph.url}`), lines[1]);
    assert.match(lines[3], /aud https:\/\/graph\.microsoft\.com, roles Mail\.Send/);
    assert.ok(lines[4].includes(`Microsoft Graph knows the mailbox ${TEST_USER}`), lines[4]);
    assert.doesNotMatch(text.stdout, /SMTP server|AUTH/);
    assert.equal(graph.sent.length, 1, 'the test message went through Graph');
    assert.ok(graph.requests.some(r => r.method === 'GET' && decodeURIComponent(r.path) === `/v1.0/users/${TEST_USER}`), 'the mailbox was looked up');

    const report = await doctorJson(['doctor', '--config', config], 0);
    assert.deepEqual(report.steps.map(s => s.name), ['config', 'token', 'claims', 'mailbox', 'send']);
    assert.deepEqual(report.steps.map(s => s.status), ['pass', 'pass', 'pass', 'pass', 'skip']);
    assert.equal(report.steps[0].details.api, 'graph');
    assert.equal(report.steps[2].details.requiredRole, 'Mail.Send');
});

test('no User.Read.All: the mailbox step passes with a warning (sending does not need it)', T, async t => {
    const { config } = await graphEnv({ userReadAll: false });
    const report = await doctorJson(['doctor', '--config', config], 0);
    const mailbox = report.steps[3];
    assert.equal(mailbox.status, 'pass');
    assert.match(mailbox.finding, /User\.Read\.All/);
    assert.deepEqual(mailbox.warnings.map(w => w.id), ['graph.user_read_all']);
    assert.equal(mailbox.warnings[0].params.user, TEST_USER);
});

test('an unknown mailbox: the mailbox step fails with Graph\'s error and graph.mailbox_not_found', T, async t => {
    const other = 'nobody@example.com';
    const { config } = await graphEnv({ user: other });
    const report = await doctorJson(['doctor', '--config', config, '--send-to', RCPT], 1);
    assert.deepEqual(report.steps.map(s => s.status), ['pass', 'pass', 'pass', 'fail', 'skip']);
    const mailbox = report.steps[3];
    assert.equal(mailbox.details.statusCode, 404);
    assert.equal(mailbox.details.graphError, 'ErrorInvalidUser');
    assert.ok(mailbox.details.requestId, 'Graph\'s request-id is reported');
    assert.equal(mailbox.hint.id, 'graph.mailbox_not_found');
    assert.equal(mailbox.hint.params.user, other);
    assert.ok(mailbox.fix.includes(`auth.user (${other})`), mailbox.fix);
});

test('a Graph token without Mail.Send: the claims step fails with claims.graph_role_missing', T, async t => {
    const { graph, config } = await graphEnv();
    token.setHandler((_req, form, res) => token.respondWithToken(res, { clientId: form.client_id, claims: { roles: ['User.Read.All'] } }));
    t.after(() => token.setHandler(null));
    const report = await doctorJson(['doctor', '--config', config], 1);
    assert.deepEqual(report.steps.map(s => s.status), ['pass', 'pass', 'fail', 'skip', 'skip']);
    const claims = report.steps[2];
    assert.equal(claims.hint.id, 'claims.graph_role_missing');
    assert.match(claims.finding, /no Mail\.Send role \(roles: User\.Read\.All\)/);
    assert.match(claims.fix, /Microsoft Graph > Application permissions > Mail\.Send/);
    assert.equal(graph.requests.filter(r => r.method === 'GET').length, 1, 'the claims and the mailbox come from one Graph look');
});
