// Type-checks __test__/types.test-d.ts (real usage of the public types, plus mistakes that must
// not compile) with TypeScript 5 in strict mode.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const TYPE_TEST = path.join(ROOT, '__test__', 'types.test-d.ts');
const DIRECTIVE = /^\s*\/\/ @ts-expect-error\b/;

const STRICT = [
    '--noEmit',
    '--strict',
    '--exactOptionalPropertyTypes',
    '--noUncheckedIndexedAccess',
    '--noImplicitReturns',
    '--noFallthroughCasesInSwitch',
    '--module',
    'nodenext',
    '--moduleResolution',
    'nodenext',
    '--target',
    'es2022',
    '--types',
    'node',
    '--typeRoots',
    path.join(ROOT, 'node_modules', '@types'),
    '--pretty',
    'false'
];

/** Runs tsc; resolves { code, output } (tsc prints its diagnostics on stdout). */
async function tsc(file) {
    try {
        const { stdout, stderr } = await run(process.execPath, [TSC, ...STRICT, file], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
        return { code: 0, output: stdout + stderr };
    } catch (err) {
        if (typeof err.code !== 'number') {
            throw err;
        }
        return { code: err.code, output: `${err.stdout}${err.stderr}` };
    }
}

test('the TypeScript used is 5.x (the devDependency, not a transitive 6/7)', () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'typescript', 'package.json'), 'utf8'));
    assert.match(version, /^5\./);
});

test('types.test-d.ts type-checks in strict mode (every @ts-expect-error is used)', async () => {
    const { code, output } = await tsc(TYPE_TEST);
    assert.equal(code, 0, `tsc failed:\n${output}`);
});

test('without its @ts-expect-error lines, tsc reports exactly one error under each of them', async () => {
    // The same file with the directives removed, in a temp dir (import made absolute): each
    // line that followed a directive must now be an error, and nothing else.
    const lines = fs.readFileSync(TYPE_TEST, 'utf8').split('\n');
    const kept = [];
    const expectErrorAt = new Set();
    let pending = false;
    for (const line of lines) {
        if (DIRECTIVE.test(line)) {
            pending = true;
            continue;
        }
        kept.push(line.replace(/(['"])\.\.\/transport\.js\1/, JSON.stringify(path.join(ROOT, 'transport.js'))));
        if (pending) {
            expectErrorAt.add(kept.length); // 1-based line number of the line just pushed
            pending = false;
        }
    }
    assert.ok(expectErrorAt.size >= 5, 'the type test has its expected-error cases');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp-oauth-types-'));
    try {
        const stripped = path.join(dir, 'stripped.ts');
        fs.writeFileSync(stripped, kept.join('\n'));
        const { code, output } = await tsc(stripped);
        assert.notEqual(code, 0, 'tsc must fail once the directives are gone');
        const errorLines = new Set(
            [...output.matchAll(/stripped\.ts\((\d+),\d+\): error TS\d+/g)].map(m => Number(m[1]))
        );
        assert.deepEqual([...errorLines].sort((a, b) => a - b), [...expectErrorAt].sort((a, b) => a - b), output);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});
