#!/usr/bin/env bash
# Prepares the AWS SDK for JavaScript v3's Lambda client (npm @aws-sdk/client-lambda) for the tests in which a
# function calls Lamina through the SDK with its environment's credentials, once per machine: installs the pinned
# version into a cache dir outside the repo and prints its node_modules directory as the last line of stdout.
# Everything else goes to stderr. A second run finds the finished install and only prints the path.
# Exit status: 0 ready; 1 the install failed (the tests must fail, not skip).
# Env: LAMINA_JS_SDK_VERSION (default 3.1164.0), XDG_CACHE_HOME (default ~/.cache).
set -euo pipefail

version="${LAMINA_JS_SDK_VERSION:-3.1164.0}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lamina-tests"
dir="$cache/aws-sdk-client-lambda-$version"

if [ -f "$dir/.ready" ] && [ -f "$dir/node_modules/@aws-sdk/client-lambda/package.json" ]; then
  echo "$dir/node_modules"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "prepare_js_sdk: npm is not installed" >&2; exit 1; }
mkdir -p "$cache"
# Install next to the final place, then rename: an interrupted run leaves nothing half-installed behind.
work="$(mktemp -d "$cache/.aws-sdk-client-lambda-$version.XXXXXX")"
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
  printf '{"name":"lamina-js-sdk-tests","version":"1.0.0","private":true}\n' >package.json
  npm install --no-save --ignore-scripts --no-package-lock "@aws-sdk/client-lambda@$version"
) >&2 2> >(grep -v 'Unknown user config "nodedir"' >&2) || { echo "prepare_js_sdk: npm install failed" >&2; exit 1; }
touch "$work/.ready"
rm -rf "$dir"
mv "$work" "$dir"
trap - EXIT
echo "$dir/node_modules"
