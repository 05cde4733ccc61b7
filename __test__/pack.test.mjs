// Packaging, the way a user gets the package: `npm pack` the main package and this machine's
// platform package (the built .node copied into a copy of npm/<platform>/), install both
// tarballs into a fresh project with `npm install --offline` (local files only), and send real
// mail from inside that project with require() and with import, through the generated loader
// (index.js), which must find the binary in the platform package: the main package ships none.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { TEST_USER } from './support/config.mjs';
import { startEnv } from './support/env.mjs';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN_PACKAGE = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const BINARY_NAME = MAIN_PACKAGE.napi.binaryName;
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** The napi-rs platform suffix of this machine, as index.js computes it: linux-x64-gnu, ... */
function platformSuffix() {
    const { platform, arch } = process;
    if (platform === 'linux') {
        const report = process.report.getReport();
        const glibc = report.header && report.header.glibcVersionRuntime;
        return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`;
    }
    if (platform === 'win32') {
        return `win32-${arch}-msvc`;
    }
    return `${platform}-${arch}`;
}

/** The environment for npm and the child scripts: no npm_* from an outer `npm test`, no overrides. */
function childEnv(extra = {}) {
    const env = {};
    for (const [key, value] of Object.entries(process.env)) {
        if (!/^npm_|^NAPI_RS_|^SMTP_OAUTH_TRANSPORT_PATH$|^NODE_OPTIONS$|^TAS_/i.test(key)) {
            env[key] = value;
        }
    }
    return { ...env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', ...extra };
}

async function npm(args, cwd, env) {
    const { stdout } = await run(NPM, args, { cwd, env, maxBuffer: 64 * 1024 * 1024, shell: process.platform === 'win32' });
    return stdout;
}

/** `npm pack --json` in `dir` into `dest`; returns { tarball, files } */
async function pack(dir, dest, env) {
    const [result] = JSON.parse(await npm(['pack', '--json', '--pack-destination', dest], dir, env));
    return { tarball: path.join(dest, result.filename), files: result.files.map(f => f.path), size: result.size };
}

const suffix = platformSuffix();
const binaryFile = `${BINARY_NAME}.${suffix}.node`;
const platformPackageName = `${MAIN_PACKAGE.name}-${suffix}`;

describe('npm packages', () => {
    let tmp;
    let env;
    let cache;
    let main;
    let platform;
    let project;
    const timings = {};

    before(async () => {
        const builtBinary = path.join(ROOT, binaryFile);
        assert.ok(fs.existsSync(builtBinary), `${binaryFile} is not built (npm run build)`);
        assert.ok(fs.existsSync(path.join(ROOT, 'npm', suffix, 'package.json')), `npm/${suffix}/ is missing (napi create-npm-dirs)`);
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp-oauth-pack-'));
        // An empty npm cache of its own: the install below can only use the two tarballs.
        cache = path.join(tmp, 'npm-cache');
        const npmEnv = childEnv({ npm_config_cache: cache });

        let t = Date.now();
        fs.mkdirSync(path.join(tmp, 'dist'));
        main = await pack(ROOT, path.join(tmp, 'dist'), npmEnv);
        timings.packMain = Date.now() - t;

        t = Date.now();
        const platformDir = path.join(tmp, 'platform-src');
        fs.cpSync(path.join(ROOT, 'npm', suffix), platformDir, { recursive: true });
        fs.copyFileSync(builtBinary, path.join(platformDir, binaryFile));
        platform = await pack(platformDir, path.join(tmp, 'dist'), npmEnv);
        timings.packPlatform = Date.now() - t;

        t = Date.now();
        project = path.join(tmp, 'project');
        fs.mkdirSync(project);
        await npm(['init', '-y'], project, npmEnv);
        await npm(['install', '--offline', '--no-audit', '--no-fund', main.tarball, platform.tarball], project, npmEnv);
        timings.install = Date.now() - t;

        env = await startEnv();
    });

    after(async () => {
        if (env) {
            await env.close();
        }
        if (tmp) {
            fs.rmSync(tmp, { recursive: true, force: true });
        }
    });

    test('the main tarball holds the JavaScript, the types and the CLI, and no binary, tests or Rust', t => {
        t.diagnostic(`npm pack main ${timings.packMain} ms, platform ${timings.packPlatform} ms, npm install ${timings.install} ms`);
        for (const file of ['package.json', 'transport.js', 'transport.d.ts', 'binding.js', 'index.js', 'index.d.ts', 'README.md', 'LICENSE', 'CHANGELOG.md']) {
            assert.ok(main.files.includes(file), `${file} is in the main tarball (has: ${main.files.join(', ')})`);
        }
        assert.ok(main.files.includes('bin/smtp-oauth-transport.js'), 'bin/ is in the main tarball');
        for (const file of main.files) {
            assert.ok(!file.endsWith('.node'), `no binary in the main tarball: ${file}`);
            assert.ok(!/^(__test__|crates|src|target|npm|examples|\.ci|\.github|node_modules)\//.test(file), `${file} does not belong in the main tarball`);
            assert.ok(!/^Cargo\.|\.rs$|\.tgz$/.test(file), `${file} does not belong in the main tarball`);
        }
    });

    test('the platform tarball holds exactly the binary (and its manifest and README)', () => {
        assert.deepEqual([...platform.files].sort(), ['README.md', binaryFile, 'package.json'].sort());
        const installed = path.join(project, 'node_modules', platformPackageName, binaryFile);
        assert.equal(fs.statSync(installed).size, fs.statSync(path.join(ROOT, binaryFile)).size);
    });

    test('installed: the main package has no .node of its own and the CLI is linked', () => {
        const installedMain = path.join(project, 'node_modules', MAIN_PACKAGE.name);
        assert.deepEqual(
            fs.readdirSync(installedMain).filter(f => f.endsWith('.node')),
            []
        );
        const bin = path.join(project, 'node_modules', '.bin', process.platform === 'win32' ? 'smtp-oauth-transport.cmd' : 'smtp-oauth-transport');
        assert.ok(fs.existsSync(bin), `${bin} exists`);
    });

    /** Runs a script inside the project; resolves its parsed JSON output. */
    async function runInProject(file, source, config) {
        fs.writeFileSync(path.join(project, file), source);
        const { stdout } = await run(process.execPath, [file], {
            cwd: project,
            env: childEnv({ PACK_TEST_CONFIG: JSON.stringify(config) }),
            timeout: 30000
        });
        return JSON.parse(stdout);
    }

    function assertLoadedFromPlatformPackage(result) {
        const expectedMain = path.join(project, 'node_modules', MAIN_PACKAGE.name, 'transport.js');
        assert.equal(fs.realpathSync(result.resolved), fs.realpathSync(expectedMain));
        assert.equal(result.native.length, 1, `one native module loaded: ${result.native}`);
        assert.equal(
            fs.realpathSync(result.native[0]),
            fs.realpathSync(path.join(project, 'node_modules', platformPackageName, binaryFile)),
            'the loader took the binary from the platform package'
        );
    }

    test("require('smtp-oauth-transport') from a CommonJS script sends mail", async () => {
        const before = env.smtp.messages.length;
        const result = await runInProject(
            'send.cjs',
            `const { createTransport } = require('smtp-oauth-transport');
const config = JSON.parse(process.env.PACK_TEST_CONFIG);
const transport = createTransport(config);
transport
  .sendMail({ from: config.auth.user, to: 'cjs@example.com', subject: 'sent by require()', text: 'CommonJS' })
  .then(async (info) => {
    await transport.close();
    const native = Object.keys(require.cache).filter((k) => k.endsWith('.node'));
    console.log(JSON.stringify({ info, native, resolved: require.resolve('smtp-oauth-transport') }));
  })
  .catch((err) => { console.error(err.code, err.message); process.exitCode = 1; });
`,
            env.config()
        );
        assert.deepEqual(result.info.accepted, ['cjs@example.com']);
        assertLoadedFromPlatformPackage(result);
        const received = env.smtp.messages.slice(before);
        assert.equal(received.length, 1);
        assert.equal(received[0].parsed.subject, 'sent by require()');
        assert.deepEqual(received[0].envelope, { from: TEST_USER, to: ['cjs@example.com'] });
    });

    test("import { createTransport } from 'smtp-oauth-transport' in an ES module sends mail", async () => {
        const before = env.smtp.messages.length;
        const result = await runInProject(
            'send.mjs',
            `import { createTransport } from 'smtp-oauth-transport';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const config = JSON.parse(process.env.PACK_TEST_CONFIG);
const transport = createTransport(config);
const info = await transport.sendMail({ from: config.auth.user, to: 'esm@example.com', subject: 'sent by import', text: 'ESM' });
await transport.close();
const native = Object.keys(require.cache).filter((k) => k.endsWith('.node'));
console.log(JSON.stringify({ info, native, resolved: require.resolve('smtp-oauth-transport') }));
`,
            env.config()
        );
        assert.deepEqual(result.info.accepted, ['esm@example.com']);
        assertLoadedFromPlatformPackage(result);
        const received = env.smtp.messages.slice(before);
        assert.equal(received.length, 1);
        assert.equal(received[0].parsed.subject, 'sent by import');
    });

    test('installed without the platform package (as with --omit=optional): require() names the platform, the supported ones and what to do', async () => {
        const bare = path.join(tmp, 'bare-project');
        fs.mkdirSync(bare);
        const npmEnv = childEnv({ npm_config_cache: cache });
        await npm(['init', '-y'], bare, npmEnv);
        await npm(['install', '--offline', '--no-audit', '--no-fund', main.tarball], bare, npmEnv);
        fs.writeFileSync(
            path.join(bare, 'load.cjs'),
            `try { require('smtp-oauth-transport'); console.log(JSON.stringify({ loaded: true })) }
catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message, platform: err.platform, supported: err.supportedPlatforms, cause: String(err.cause && err.cause.message) })) }
`
        );
        const { stdout } = await run(process.execPath, ['load.cjs'], { cwd: bare, env: childEnv(), timeout: 30000 });
        const result = JSON.parse(stdout);
        assert.equal(result.code, 'ERR_SMTP_OAUTH_TRANSPORT_NO_BINARY', stdout);
        assert.equal(result.platform, suffix);
        assert.ok(result.message.includes(`${suffix}: platform ${process.platform}, architecture ${process.arch}`), result.message);
        if (process.platform === 'linux') {
            assert.match(result.message, /libc (glibc|musl)/);
        }
        assert.ok(result.supported.includes('linux-x64-gnu') && result.supported.includes('darwin-arm64'), result.supported);
        assert.ok(result.message.includes(`Prebuilt binaries: ${result.supported.join(', ')}`), result.message);
        assert.ok(result.message.includes('--omit=optional'), result.message);
        assert.ok(result.message.includes(`${platformPackageName}`), result.message);
        assert.ok(result.message.includes('npm run build'), result.message);
        assert.match(result.cause, /^Cannot find native binding/, 'the loader\'s own error is kept as the cause');
    });

    test('the installed CLI runs the doctor against the local servers', async () => {
        fs.writeFileSync(path.join(project, 'local.js'), `module.exports = ${JSON.stringify({ mail: { smtp: env.config() } })};\n`);
        const cli = path.join(project, 'node_modules', MAIN_PACKAGE.name, 'bin', 'smtp-oauth-transport.js');
        const { stdout } = await run(process.execPath, [cli, 'doctor', '--config', 'local.js', '--json'], {
            cwd: project,
            env: childEnv(),
            timeout: 30000
        });
        const report = JSON.parse(stdout);
        assert.equal(report.ok, true, stdout);
        assert.deepEqual(
            report.steps.map(s => s.status),
            ['pass', 'pass', 'pass', 'pass', 'pass', 'skip']
        );
    });
});
