// Small timing helpers for the token lifecycle tests.

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/** Sleeps until the wall clock reaches `at` (ms since the epoch); returns at once if it has. */
export function sleepUntil(at) {
    return sleep(Math.max(0, at - Date.now()));
}

/**
 * Polls `predicate` every 20 ms until it returns a truthy value; rejects after `timeoutMs`
 * with `label` in the message.
 */
export async function waitFor(predicate, { timeoutMs = 5000, label = 'condition' } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = predicate();
        if (value) {
            return value;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${label}`);
        }
        await sleep(20);
    }
}

/** Runs `fn` and resolves with `{ value, error, ms }` (it never rejects). */
export async function timed(fn) {
    const started = Date.now();
    try {
        const value = await fn();
        return { value, error: null, ms: Date.now() - started, started };
    } catch (error) {
        return { value: undefined, error, ms: Date.now() - started, started };
    }
}
