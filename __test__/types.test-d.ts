// Type-level tests of the public types (transport.d.ts), checked by __test__/types.test.mjs
// with `tsc --noEmit --strict` (TypeScript 5). Nothing here runs.
//
// Lines marked `// @ts-expect-error` must NOT type-check: tsc reports an unused directive as an
// error, so these checks fail the test if the types stop catching the mistake below them.
import { EventEmitter } from 'node:events';
import { createTransport, Transport } from '../transport.js';
import type {
    Address,
    Attachment,
    MailMessage,
    OAuth2Options,
    RecipientError,
    SentMessageInfo,
    SmtpConfig,
    SmtpOAuthError,
    TlsOptions
} from '../transport.js';

/** Exact type equality, for checks on what a call returns. */
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | void {}

function requireEnv(name: string): string {
    const value = process.env[name];
    if (!value) {
        throw new Error(`${name} is not set`);
    }
    return value;
}

// ---- The TAS local.js shape from the product page ------------------------------------------

const local = {
    mail: {
        smtp: {
            type: 'oauth2',
            host: 'smtp.office365.com',
            port: 587,
            auth: {
                user: requireEnv('TAS_SMTP_AUTH_USER')
            },
            oauth2: {
                host: `https://login.microsoftonline.com/${requireEnv('TAS_SMTP_OAUTH_TENANT_ID')}/oauth2/v2.0/token`,
                grantType: 'client_credentials',
                clientSecret: requireEnv('TAS_SMTP_OAUTH_CLIENT_SECRET'),
                clientId: requireEnv('TAS_SMTP_OAUTH_CLIENT_ID'),
                scope: 'https://outlook.office365.com/.default'
            }
        },
        from: 'Team assistant <tas@contoso.com>'
    }
} satisfies { mail: { smtp: SmtpConfig; from: string } };

const transport = createTransport(local.mail.smtp, { from: local.mail.from });
assertType<Equals<typeof transport, Transport>>();
const emitter: EventEmitter = transport;
void emitter;
const name: string = transport.name;
const version: string = transport.version;
void name, version;

// Every optional field, with the value types TAS configs use.
const tlsOptions: TlsOptions = { ca: [Buffer.from('-----BEGIN CERTIFICATE-----'), 'PEM'], rejectUnauthorized: true, servername: 'smtp.office365.com' };
const oauth2: OAuth2Options = {
    host: 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token',
    clientId: 'id',
    clientSecret: 'secret',
    scope: 'https://outlook.office365.com/.default',
    renewBeforeSeconds: 600,
    ca: [Buffer.from('-----BEGIN CERTIFICATE-----'), 'PEM'],
    failureCacheSeconds: 0,
    timeout: 10_000
};
const full: SmtpConfig = {
    type: 'oauth2',
    host: 'smtp.office365.com',
    port: '587',
    secure: false,
    auth: { user: 'tas@contoso.com' },
    oauth2,
    tls: tlsOptions,
    name: 'tas.contoso.com',
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 60_000,
    maxRecipientsPerMessage: 500,
    chunking: false
};
// The basic (password) configuration that TAS had before OAuth2.
const basic: SmtpConfig = { host: 'relay.contoso.com', port: 25, auth: { user: 'tas', pass: 'secret' } };
createTransport(full);
createTransport(basic);
// nodemailer's network options: a proxy for SMTP, the local address, the bound of the lookup.
createTransport({ ...full, proxy: 'socks5h://user:pass@proxy.contoso.com:1080', localAddress: '192.0.2.10', dnsTimeout: 5_000 });
// @ts-expect-error dnsTimeout is in ms, a number
createTransport({ ...basic, dnsTimeout: '5s' });

// Credentials without a secret: a federated token file, a callback, a managed identity.
const federated: OAuth2Options = { tenantId: 't', clientId: 'id', clientAssertionFile: '/var/run/secrets/azure/tokens/azure-identity-token' };
const callback: OAuth2Options = { tenantId: 't', clientId: 'id', clientAssertion: async () => 'eyJ...', clientAssertionTimeout: 5_000 };
const managed: OAuth2Options = { managedIdentity: true };
const userAssigned: OAuth2Options = { managedIdentity: { clientId: 'mi' }, managedIdentityEndpoint: 'http://127.0.0.1:8080/token' };
for (const credential of [federated, callback, managed, userAssigned]) {
    createTransport({ ...full, oauth2: credential });
}
// @ts-expect-error a managed identity is named by one id, as a string
createTransport({ ...full, oauth2: { managedIdentity: { clientId: 42 } } });
transport.inspectToken().then(report => {
    const kind: 'clientSecret' | 'certificate' | 'clientAssertionFile' | 'clientAssertion' | 'managedIdentity' | undefined = report.credential?.kind;
    const exp: Date | null | undefined = report.credential?.assertion?.exp;
    void kind, exp;
});

// ---- api: 'graph' ------------------------------------------------------------------------------

const graphConfig: SmtpConfig = {
    type: 'oauth2',
    api: 'graph',
    auth: { user: 'tas@contoso.com' },
    saveToSentItems: false,
    graphUrl: 'https://graph.microsoft.com/v1.0',
    oauth2: { tenantId: 'contoso', clientId: 'id', clientSecret: 'secret' }
};
createTransport(graphConfig);

// @ts-expect-error without api: 'graph', host (or a service that names one) is required
createTransport({ type: 'oauth2', auth: { user: 'tas@contoso.com' }, oauth2: { tenantId: 't', clientId: 'id', clientSecret: 's' } });

// @ts-expect-error Graph takes only OAuth2 tokens
createTransport({ api: 'graph', auth: { user: 'u', pass: 'p' } });

function graphErrorFields(err: SmtpOAuthError): string | undefined {
    return err.graphError === 'ErrorAccessDenied' ? err.requestId : undefined;
}
void graphErrorFields;

// ---- sendMail: the message and the info -----------------------------------------------------

const attachment: Attachment = { filename: 'report.pdf', content: Buffer.from('%PDF'), contentType: 'application/pdf' };
const to: Address[] = ['a@contoso.com', 'Bob <b@contoso.com>', { name: 'Cecilie', address: 'c@contoso.com' }];
const message: MailMessage = {
    from: local.mail.from,
    to,
    cc: 'd@contoso.com, e@contoso.com',
    bcc: { address: 'audit@contoso.com' },
    replyTo: 'helpdesk@contoso.com',
    subject: 'Žádost č. 42 schválena',
    text: 'plain',
    html: '<p>html <img src="cid:logo"></p>',
    attachments: [
        attachment,
        { filename: 'logo.png', content: 'iVBORw0KGgo=', encoding: 'base64', cid: 'logo' },
        { path: '/tmp/export.csv' }
    ],
    headers: { 'X-TAS-Request': '42', 'X-Tags': ['a', 'b'] },
    messageId: '<42@tas.contoso.com>',
    date: new Date(),
    inReplyTo: '<41@tas.contoso.com>',
    references: ['<40@tas.contoso.com>', '<41@tas.contoso.com>'],
    priority: 'high',
    envelope: { from: 'bounces@contoso.com', to: ['a@contoso.com'] },
    dsn: { id: 'tas-42', return: 'headers', notify: ['failure', 'delay'], recipient: 'a@contoso.com' }
};

async function send(): Promise<void> {
    const info = await transport.sendMail(message);
    assertType<Equals<typeof info, SentMessageInfo>>();
    const id: string = info.messageId;
    const accepted: string[] = info.accepted;
    const rejected: string[] = info.rejected;
    const response: string = info.response;
    const envelopeTo: string[] = info.envelope.to;
    const envelopeFrom: string | undefined = info.envelope.from;
    for (const refused of info.rejectedErrors) {
        const r: RecipientError = refused;
        const line: string = `${r.recipient}: ${r.responseCode} ${r.response} (${r.code}, ${r.command})`;
        void line;
    }
    void id, accepted, rejected, response, envelopeTo, envelopeFrom;

    // @ts-expect-error nodemailer spells it messageId
    void info.messageID;

    // @ts-expect-error accepted holds addresses, not numbers
    info.accepted.push(1);

    const verified: true = await transport.verify();
    void verified;
    await transport.close();
}

// The callback forms return nothing.
const nothing: void = transport.sendMail(message, (err, info) => {
    if (err) {
        const code: string = err.code;
        void code;
        return;
    }
    const id: string | undefined = info?.messageId;
    void id;
});
void nothing;
transport.verify((err, ok) => {
    void err, ok;
});

// ---- Errors ---------------------------------------------------------------------------------

async function handle(): Promise<string> {
    try {
        await transport.sendMail({ to: 'a@contoso.com', text: 'x' });
        return 'sent';
    } catch (caught) {
        const err = caught as SmtpOAuthError;
        const permanent: boolean = err.permanent;
        void permanent;
        switch (err.code) {
            case 'ECONFIG':
                return err.message;
            case 'EOAUTH2': {
                const codes: number[] | undefined = err.oauthErrorCodes;
                if (err.oauthError === 'invalid_client' && codes?.includes(7000215)) {
                    return `${err.statusCode}: ${err.hint ?? err.response}`;
                }
                return err.response ?? err.message;
            }
            case 'EAUTH':
                if (err.hintId === 'smtp.token_refused') {
                    const params: Record<string, string> | undefined = err.hintParams;
                    return `${params?.user}: ${err.hint}`;
                }
                return `${err.command} ${err.responseCode}`;
            case 'EENVELOPE':
                return `${err.command} ${err.responseCode} ${err.response} ${err.rejected?.join(',')} ${err.rejectedErrors?.length}`;
            default:
                return err.code;
        }
    }
}

function isAuthError(err: SmtpOAuthError): boolean {
    // @ts-expect-error a misspelt error code can never match
    return err.code === 'EAUHT';
}

// ---- Mistakes the types must catch ----------------------------------------------------------

const misspelt: SmtpConfig = {
    type: 'oauth2',
    host: 'smtp.office365.com',
    port: 587,
    auth: { user: 'tas@contoso.com' },
    oauth2: {
        host: 'https://login.microsoftonline.com/contoso/oauth2/v2.0/token',
        clientId: 'id',
        // @ts-expect-error clientSecrt is not a field (clientSecret is)
        clientSecrt: 'secret',
        scope: 'https://outlook.office365.com/.default'
    }
};

const numericHost: SmtpConfig = {
    // @ts-expect-error host is a name, not a number
    host: 42,
    port: 587
};

const badType: SmtpConfig = {
    // @ts-expect-error type is 'oauth2' (or omitted), not 'xoauth2'
    type: 'xoauth2',
    host: 'smtp.office365.com',
    port: 587
};

const badTls: SmtpConfig = {
    host: 'smtp.office365.com',
    port: 587,
    // @ts-expect-error rejectUnauthorized is a boolean
    tls: { rejectUnauthorized: 'false' }
};

const badMessage: MailMessage = {
    to: 'a@contoso.com',
    // @ts-expect-error priority is 'high' | 'normal' | 'low'
    priority: 'urgent'
};

// @ts-expect-error a message field that does not exist (attachments)
transport.sendMail({ to: 'a@contoso.com', atachments: [] });

// @ts-expect-error the config is required
createTransport();

async function tokens(): Promise<void> {
    const { accessToken, expiresAt } = await transport.getAccessToken();
    const a: string = accessToken;
    const e: Date = expiresAt;
    const report = await transport.inspectToken();
    const isJwt: boolean = report.isJwt;
    const roles: string[] = report.roles;
    const exp: Date | null = report.exp;
    const aud: string | undefined = report.aud;
    for (const problem of report.problems) {
        const code: 'AUDIENCE' | 'ROLE_MISSING' | 'TENANT_MISMATCH' | 'APP_MISMATCH' = problem.code;
        const text: string = problem.message;
        void code, text;
    }
    void a, e, isJwt, roles, exp, aud;
    const probed = await transport.probe({ sendTo: 'admin@contoso.com' });
    for (const step of probed.steps) {
        const status: 'pass' | 'fail' | 'skip' = step.status;
        const id: string | undefined = step.hint?.id;
        const warnings: string[] = step.warnings.map(w => w.text);
        void status, id, warnings;
    }
    const healthy: boolean = probed.ok;
    void healthy;
}

void tokens, send, handle, isAuthError, misspelt, numericHost, badType, badTls, badMessage;

// Every nodemailer message field, in its usual forms.
import { Readable } from 'node:stream';
const everyField: MailMessage = {
    from: 'a@example.com',
    to: ['b@example.com'],
    text: Readable.from(['streamed']),
    html: { path: 'data:text/html,<p>x</p>' },
    watchHtml: '<b>watch</b>',
    amp: Buffer.from('<html ⚡4email></html>'),
    icalEvent: { method: 'REQUEST', filename: 'meeting.ics', content: 'BEGIN:VCALENDAR' },
    alternatives: [{ contentType: 'text/x-web-markdown', content: '**x**' }],
    attachments: [
        { href: 'https://example.com/a.pdf', httpHeaders: { Authorization: 'Bearer x' } },
        { content: Readable.from([Buffer.from('x')]), filename: false, contentTransferEncoding: 'quoted-printable' },
        { raw: 'Content-Type: text/plain\r\n\r\nraw', headers: { 'X-Part': ['1', '2'] } },
    ],
    attachDataUrls: true,
    headers: { 'X-Tag': ['a', 'b'], 'X-Prepared': { prepared: true, value: 'v' } },
    normalizeHeaderKey: key => key.toUpperCase(),
    list: { unsubscribe: [{ url: 'https://example.com/u', comment: 'Unsubscribe' }], unsubscribePost: 'List-Unsubscribe=One-Click' },
    date: 'Tue, 07 Jul 2026 10:11:12 +0200',
    xMailer: false,
    encoding: 'base64',
    textEncoding: 'quoted-printable',
    raw: Buffer.from('From: a@example.com\r\n\r\nbody'),
    disableUrlAccess: true,
};
const nodemailerOptions: SmtpConfig = { service: 'Office365', requireTLS: true, authMethod: 'XOAUTH2' };
// @ts-expect-error opportunisticTLS cannot be turned on
const opportunistic: SmtpConfig = { host: 'h', opportunisticTLS: true };
void everyField, nodemailerOptions, opportunistic;
const nodemailerShape: SmtpConfig = {
    host: 'smtp.office365.com',
    port: 587,
    auth: { type: 'OAuth2', user: 'a@contoso.com', clientId: 'id', clientSecret: 's', accessUrl: 'https://login.microsoftonline.com/t/oauth2/v2.0/token' },
};
void nodemailerShape;
const refreshShape: SmtpConfig = {
    host: 'smtp.office365.com',
    auth: { type: 'OAuth2', user: 'a@contoso.com', clientId: 'id', clientSecret: 's', refreshToken: 'r', accessUrl: 'https://login.microsoftonline.com/t/oauth2/v2.0/token' },
};
void refreshShape;
