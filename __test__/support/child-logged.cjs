// Child process used by security.test.mjs: everything an application might print about a
// transport, with nodemailer's `logger: true` and `debug: true` (log lines and the SMTP
// transcript go to the console). The parent searches stdout and stderr for the credentials.
//
//   node child-logged.cjs
//   env SMTP_OAUTH_TEST_CONFIG = JSON of config.mail.smtp (a working one)
//
// Steps: print the transport (console.log, util.inspect with hidden fields, JSON), verify(),
// send a message, print the info; then a send that fails at the token endpoint (unknown
// client id) and one refused by the server (all recipients refused), each error printed with
// console.error and as JSON of all its own properties; print the transport again; close.
// Prints DONE at the end.
'use strict';

const path = require('node:path');
const util = require('node:util');

const { createTransport } = require(process.env.SMTP_OAUTH_TRANSPORT_PATH || path.join(__dirname, '..', '..', 'transport.js'));

const config = JSON.parse(process.env.SMTP_OAUTH_TEST_CONFIG);
const message = subject => ({ from: config.auth.user, to: 'rcpt@example.com', subject, text: 'sent with logger: true' });
const printError = (label, err) => {
    console.error(`${label}:`, err);
    console.error(`${label} JSON:`, JSON.stringify(err, Object.getOwnPropertyNames(err)));
};

(async () => {
    const transport = createTransport({ ...config, logger: true, debug: true });
    console.log(transport);
    console.log(util.inspect(transport, { showHidden: true, depth: null }));
    console.log(JSON.stringify(transport));
    await transport.verify();
    console.log('VERIFIED');
    const info = await transport.sendMail(message('logged send'));
    console.log('SENT', info);

    const wrongClient = createTransport({
        ...config,
        logger: true,
        debug: true,
        oauth2: { ...config.oauth2, clientId: '00000000-0000-0000-0000-00000000dead' }
    });
    try {
        await wrongClient.sendMail(message('wrong client id'));
    } catch (err) {
        printError('TOKEN ERROR', err);
    }
    await wrongClient.close();

    try {
        await transport.sendMail({ ...message('refused'), to: 'refused@example.com' });
    } catch (err) {
        printError('SEND ERROR', err);
    }
    console.log(transport);
    await transport.close();
    console.log('DONE');
})().catch(err => {
    console.error('UNEXPECTED', err);
    process.exitCode = 1;
});
