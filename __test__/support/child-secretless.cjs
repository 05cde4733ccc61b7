// Child process for the tests of credentials without secrets: a transport whose credential
// comes from this process's environment (AZURE_FEDERATED_TOKEN_FILE, IDENTITY_ENDPOINT, ...).
//
//   node child-secretless.cjs <mode>
//   env SMTP_OAUTH_TEST_CONFIG = JSON of config.mail.smtp
//
// Modes:
//   send      send one message with a logger; print LOG <level> <message> for each log line,
//             then SENT, then CREDENTIAL <json of inspectToken().credential>; or ERROR <json>
//   callback  oauth2.clientAssertion returns SMTP_OAUTH_TEST_ASSERTION; get one token, print
//             TOKEN, then return: the process must exit on its own (nothing keeps it alive)
'use strict';

const path = require('node:path');

const { createTransport } = require(process.env.SMTP_OAUTH_TRANSPORT_PATH || path.join(__dirname, '..', '..', 'transport.js'));

const config = JSON.parse(process.env.SMTP_OAUTH_TEST_CONFIG);
const mode = process.argv[2];
const say = line => process.stdout.write(line + '\n');
const report = err => {
    say(`ERROR ${JSON.stringify({ code: err.code, message: err.message, hint: err.hint })}`);
    process.exitCode = 1;
};

if (mode === 'send') {
    const logger = {};
    for (const level of ['debug', 'info', 'warn', 'error']) {
        logger[level] = message => say(`LOG ${level} ${message}`);
    }
    (async () => {
        const transport = createTransport({ ...config, logger, debug: true });
        await transport.sendMail({ from: config.auth.user, to: 'rcpt@example.com', subject: 'secretless', text: 'no secret here' });
        say('SENT');
        const { credential } = await transport.inspectToken();
        say(`CREDENTIAL ${JSON.stringify(credential)}`);
        await transport.close();
    })().catch(report);
} else if (mode === 'callback') {
    const transport = createTransport({
        ...config,
        oauth2: { ...config.oauth2, clientAssertion: async () => process.env.SMTP_OAUTH_TEST_ASSERTION }
    });
    transport.getAccessToken().then(() => say('TOKEN'), report);
} else {
    throw new Error(`unknown mode ${mode}`);
}
