#!/usr/bin/env bash
# Runs every fuzz target of crates/core/tests/fuzz/ (proptest) for a bounded time and
# prints how many executions each one ran. `npm run fuzz` calls it.
#
#   FUZZ_SECONDS    time budget per target, in seconds (default 60)
#   PROPTEST_CASES  upper bound of cases per target (default: practically unbounded)
#   FUZZ_TARGETS    space-separated subset of the targets below
#
# Each target stops after FUZZ_SECONDS (checked between batches of cases); `timeout` kills it
# if it does not stop within another 60 s. The exit code is 1 if any target failed; the
# failure and proptest's minimal failing input are printed.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
cases="${PROPTEST_CASES:-1000000000}"
targets=(${FUZZ_TARGETS:-fuzz_config_parser fuzz_address_parser fuzz_token_response_parser fuzz_token_claims fuzz_message_builder})

echo "building the fuzz targets (crates/core/tests/fuzz/)..."
cargo test -p smtp-oauth-core --test fuzz --no-run --quiet || exit 1

status=0
for target in "${targets[@]}"; do
    log="$(mktemp)"
    FUZZ_SECONDS="$seconds" PROPTEST_CASES="$cases" timeout --kill-after=10 "$((seconds + 60))" \
        cargo test -p smtp-oauth-core --quiet --test fuzz "targets::$target" -- --exact --nocapture >"$log" 2>&1
    rc=$?
    summary="$(grep -E '^fuzz [a-z ]+: [0-9]+ executions' "$log" | tail -n 1)"
    # A name that matches no test runs nothing and exits 0: that is not a pass.
    if [ "$rc" -eq 0 ] && [ -z "$summary" ]; then
        rc=1
    fi
    if [ "$rc" -eq 0 ]; then
        echo "ok      $target  ${summary#fuzz }"
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "TIMEOUT $target  (no result within $((seconds + 60)) s)  ${summary#fuzz }"
        status=1
    else
        echo "FAILED  $target  ${summary#fuzz }"
        sed -n '/^fuzz target .* failed/,/^stack backtrace/p' "$log" | grep -v '^stack backtrace' | cut -c1-3000 | sed 's/^/        /'
        status=1
    fi
    grep -E '^fuzz message: [0-9]+ messages built' "$log" | sed 's/^/        /'
    rm -f "$log"
done
exit "$status"
