// Throwaway PKI for the test SMTP server.
//
// smtp-server ships a built-in localhost certificate, but it expired in Feb 2025 and
// is self-signed, so every test that does STARTTLS uses a CA generated here instead.
// The client is given the CA through `tls.ca`, exactly as an operator would configure
// a private relay.
//
// The certificates are shaped so that strict verifiers (rustls / webpki, which the
// Rust side is expected to use) accept them: X.509 v3, SHA-256 signatures, a CA with
// basicConstraints cA=true + keyCertSign, a leaf with SAN DNS:localhost + IP:127.0.0.1,
// extKeyUsage serverAuth, and positive serial numbers.
import crypto from 'node:crypto';
import forge from 'node-forge';

const { pki } = forge;
const DAY_MS = 24 * 60 * 60 * 1000;

// A serial number is a DER INTEGER written from these hex bytes as is: a leading
// byte >= 0x80 would make it negative, which webpki rejects. Prefix 0x01.
function serialHex() {
    return '01' + crypto.randomBytes(15).toString('hex');
}

// forge hands RSA key generation to node's crypto.generateKeyPairSync when it is
// available (no custom prng given), which makes 2048-bit keys take milliseconds
// instead of seconds.
function rsaKeyPair() {
    return pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
}

function makeCa(commonName) {
    const keys = rsaKeyPair();
    const cert = pki.createCertificate();
    cert.publicKey = keys.publicKey;
    cert.serialNumber = serialHex();
    cert.validity.notBefore = new Date(Date.now() - DAY_MS);
    cert.validity.notAfter = new Date(Date.now() + 2 * 365 * DAY_MS);
    const attrs = [
        { name: 'commonName', value: commonName },
        { name: 'organizationName', value: 'smtp-oauth-transport tests' }
    ];
    cert.setSubject(attrs);
    cert.setIssuer(attrs);
    cert.setExtensions([
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
        { name: 'subjectKeyIdentifier' }
    ]);
    cert.sign(keys.privateKey, forge.md.sha256.create());
    return { cert, keys };
}

function makeLeaf(ca, { notBefore, notAfter, commonName = 'localhost', altNames } = {}) {
    const keys = rsaKeyPair();
    const cert = pki.createCertificate();
    cert.publicKey = keys.publicKey;
    cert.serialNumber = serialHex();
    cert.validity.notBefore = notBefore;
    cert.validity.notAfter = notAfter;
    cert.setSubject([{ name: 'commonName', value: commonName }]);
    cert.setIssuer(ca.cert.subject.attributes);
    cert.setExtensions([
        { name: 'basicConstraints', cA: false, critical: true },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        {
            name: 'subjectAltName',
            altNames: altNames || [
                { type: 2, value: 'localhost' }, // dNSName
                { type: 7, ip: '127.0.0.1' } // iPAddress
            ]
        },
        { name: 'subjectKeyIdentifier' },
        { name: 'authorityKeyIdentifier', keyIdentifier: ca.cert.generateSubjectKeyIdentifier().getBytes() }
    ]);
    cert.sign(ca.keys.privateKey, forge.md.sha256.create());
    return { cert, keys };
}

function toPem(ca, leaf) {
    return {
        caPem: pki.certificateToPem(ca.cert),
        certPem: pki.certificateToPem(leaf.cert),
        keyPem: pki.privateKeyToPem(leaf.keys.privateKey)
    };
}

// Memoised per process: node --test runs each test file in its own process, so every
// file generates its PKI once.
let trusted;
let trustedCa;
let untrusted;
let expired;

function getTrustedCa() {
    if (!trustedCa) {
        trustedCa = makeCa('smtp-oauth-transport Test CA');
    }
    return trustedCa;
}

/**
 * The PKI used by default: a CA (give `caPem` to the client as `tls.ca`) and a server
 * certificate for localhost / 127.0.0.1 signed by it, valid from yesterday for a year.
 *
 * @returns {{ caPem: string, certPem: string, keyPem: string }}
 */
export function makeTestPki() {
    if (!trusted) {
        const ca = getTrustedCa();
        const leaf = makeLeaf(ca, {
            notBefore: new Date(Date.now() - DAY_MS),
            notAfter: new Date(Date.now() + 365 * DAY_MS)
        });
        trusted = toPem(ca, leaf);
    }
    return trusted;
}

/**
 * A second, unrelated CA and a localhost certificate signed by it. A client that
 * trusts only makeTestPki().caPem (or only the system roots) must refuse it.
 *
 * @returns {{ caPem: string, certPem: string, keyPem: string }}
 */
export function makeUntrustedPki() {
    if (!untrusted) {
        const ca = makeCa('Some Other CA (not trusted by the tests)');
        const leaf = makeLeaf(ca, {
            notBefore: new Date(Date.now() - DAY_MS),
            notAfter: new Date(Date.now() + 365 * DAY_MS)
        });
        untrusted = toPem(ca, leaf);
    }
    return untrusted;
}

/**
 * A localhost certificate signed by the *trusted* test CA (same caPem as
 * makeTestPki()) that expired yesterday: only the validity period is wrong.
 *
 * @returns {{ caPem: string, certPem: string, keyPem: string }}
 */
export function makeExpiredPki() {
    if (!expired) {
        const ca = getTrustedCa();
        const leaf = makeLeaf(ca, {
            notBefore: new Date(Date.now() - 400 * DAY_MS),
            notAfter: new Date(Date.now() - DAY_MS)
        });
        expired = toPem(ca, leaf);
    }
    return expired;
}

/**
 * A server certificate for other names (e.g. a TLS-intercepting test proxy posing as
 * login.microsoftonline.us), signed by the *trusted* test CA (same caPem as makeTestPki()).
 * Not memoised: each call makes a new key and certificate.
 *
 * @param {string[]} dnsNames  subjectAltName DNS names; the first is also the common name
 * @returns {{ caPem: string, certPem: string, keyPem: string }}
 */
export function makeServerPki(dnsNames) {
    const ca = getTrustedCa();
    const leaf = makeLeaf(ca, {
        notBefore: new Date(Date.now() - DAY_MS),
        notAfter: new Date(Date.now() + 365 * DAY_MS),
        commonName: dnsNames[0],
        altNames: dnsNames.map(value => ({ type: 2, value }))
    });
    return toPem(ca, leaf);
}

/**
 * A self-signed certificate with a fresh RSA key, the way an app registration's
 * certificate credential is made (`New-SelfSignedCertificate` / `openssl req -x509`).
 *
 * @param {object} [opts]
 * @param {string} [opts.commonName]
 * @returns {{
 *   certPem: string,          -----BEGIN CERTIFICATE-----
 *   keyPkcs8Pem: string,      -----BEGIN PRIVATE KEY-----
 *   keyPkcs1Pem: string,      -----BEGIN RSA PRIVATE KEY-----
 *   der: Buffer,              the certificate's DER
 *   sha1Hex: string,          SHA-1 thumbprint as the Azure portal shows it (upper-case hex)
 *   sha256: Buffer            SHA-256 of the DER
 * }}
 */
export function makeClientCertificate({ commonName = 'smtp-oauth-transport test app' } = {}) {
    const keys = rsaKeyPair();
    const cert = pki.createCertificate();
    cert.publicKey = keys.publicKey;
    cert.serialNumber = serialHex();
    cert.validity.notBefore = new Date(Date.now() - DAY_MS);
    cert.validity.notAfter = new Date(Date.now() + 365 * DAY_MS);
    const attrs = [{ name: 'commonName', value: commonName }];
    cert.setSubject(attrs);
    cert.setIssuer(attrs);
    cert.setExtensions([
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
        { name: 'extKeyUsage', clientAuth: true }
    ]);
    cert.sign(keys.privateKey, forge.md.sha256.create());
    const certPem = pki.certificateToPem(cert);
    const der = Buffer.from(forge.asn1.toDer(pki.certificateToAsn1(cert)).getBytes(), 'binary');
    return {
        certPem,
        keyPkcs8Pem: pki.privateKeyInfoToPem(pki.wrapRsaPrivateKey(pki.privateKeyToAsn1(keys.privateKey))),
        keyPkcs1Pem: pki.privateKeyToPem(keys.privateKey),
        der,
        sha1Hex: crypto.createHash('sha1').update(der).digest('hex').toUpperCase(),
        sha256: crypto.createHash('sha256').update(der).digest()
    };
}
