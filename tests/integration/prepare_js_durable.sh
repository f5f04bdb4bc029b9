#!/usr/bin/env bash
# Prepares AWS's durable execution SDK for JavaScript (npm @aws/durable-execution-sdk-js, with the
# @aws-sdk/client-lambda it depends on) for test_durable's functions, once per machine: installs the pinned version
# into a cache dir outside the repo and prints its node_modules directory as the last line of stdout.
# Everything else goes to stderr. A second run finds the finished install and only prints the path.
# Exit status: 0 ready; 1 the install failed (the tests must fail, not skip).
# Env: LAMINA_DURABLE_SDK_VERSION (default 2.4.0), XDG_CACHE_HOME (default ~/.cache).
set -euo pipefail

version="${LAMINA_DURABLE_SDK_VERSION:-2.4.0}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lamina-tests"
dir="$cache/aws-durable-execution-sdk-js-$version"

if [ -f "$dir/.ready" ] && [ -f "$dir/node_modules/@aws/durable-execution-sdk-js/package.json" ]; then
  echo "$dir/node_modules"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "prepare_js_durable: npm is not installed" >&2; exit 1; }
mkdir -p "$cache"
# Install next to the final place, then rename: an interrupted run leaves nothing half-installed behind.
work="$(mktemp -d "$cache/.aws-durable-execution-sdk-js-$version.XXXXXX")"
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
  printf '{"name":"lamina-js-durable-tests","version":"1.0.0","private":true}\n' >package.json
  npm install --no-save --ignore-scripts --no-package-lock "@aws/durable-execution-sdk-js@$version"
) >&2 2> >(grep -v 'Unknown user config "nodedir"' >&2) || { echo "prepare_js_durable: npm install failed" >&2; exit 1; }
touch "$work/.ready"
rm -rf "$dir"
mv "$work" "$dir"
trap - EXIT
echo "$dir/node_modules"
