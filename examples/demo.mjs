// The whole flow on this machine, nothing mocked: a local Entra-shaped token endpoint and a
// local SMTP server (STARTTLS with a throwaway CA, AUTH XOAUTH2 that accepts only tokens the
// endpoint issued) are started; a TAS `mail.smtp` config pointing at them is handed to
// createTransport, which gets a token, opens SMTP, upgrades to TLS, authenticates and sends.
// The message the server received is parsed and printed.
//
// Run: npm run demo
import { createRequire } from 'node:module';
import { startEnv } from '../__test__/support/env.mjs';

const { createTransport } = createRequire(import.meta.url)('../transport.js');

const env = await startEnv();
try {
    // Exactly the seed's shape (mail.smtp in local.js), pointed at the local servers.
    const smtpConfig = env.config();
    const shown = { ...smtpConfig, tls: { ...smtpConfig.tls, ca: '<test CA PEM>' }, oauth2: { ...smtpConfig.oauth2, clientSecret: '<redacted>' } };
    console.log('mail.smtp =', shown);

    const transport = createTransport(smtpConfig, { from: 'Team assistant <sender@example.com>' });
    console.log('\nverify() ->', await transport.verify());

    const info = await transport.sendMail({
        to: 'Jana Nováková <jana@example.com>',
        bcc: 'audit@example.com',
        subject: 'Schůzka v pondělí ✔',
        text: 'Dobrý den,\nschůzka je v pondělí v 10:00.\n',
        html: '<p>Dobrý den,</p><p>schůzka je v <b>pondělí v 10:00</b>.</p>',
        attachments: [{ filename: 'agenda.txt', content: 'Agenda: 1. status 2. plan\n' }],
    });
    console.log('\nsendMail() -> info =', info);
    await transport.close();

    const received = env.smtp.messages.at(-1);
    console.log('\nThe SMTP server received (parsed with mailparser):');
    console.log('  envelope   ', received.envelope);
    console.log('  From       ', received.parsed.from.text);
    console.log('  To         ', received.parsed.to.text);
    console.log('  Bcc header ', received.parsed.bcc ? received.parsed.bcc.text : '(none, as it should be)');
    console.log('  Subject    ', received.parsed.subject);
    console.log('  Message-ID ', received.parsed.messageId);
    console.log('  text       ', JSON.stringify(received.parsed.text));
    console.log('  attachments', received.parsed.attachments.map((a) => `${a.filename} (${a.contentType}, ${a.size} bytes)`));
    console.log(`\nToken requests made: ${env.token.requests.length} (verify and send shared one cached token)`);
    console.log(`AUTH over TLS: ${env.smtp.authAttempts.every((a) => a.secure)}`);
} finally {
    await env.close();
}
