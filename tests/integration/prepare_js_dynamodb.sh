#!/usr/bin/env bash
# Prepares the AWS SDK for JavaScript v3's DynamoDB packages (npm @aws-sdk/client-dynamodb, @aws-sdk/lib-dynamodb,
# @aws-sdk/client-dynamodb-streams) once per machine, for the DynamoDB tests (issue #21): the SDK as a client of
# Lamina's DynamoDB API, and inside functions. Installs into a cache dir outside the repo and prints its node_modules
# directory as the last line of stdout; everything else goes to stderr. A second run finds the finished install.
# Exit status: 0 ready; 1 the install failed (the tests must fail, not skip).
# Env: XDG_CACHE_HOME (default ~/.cache). The registry serves these packages at differing versions: npm picks
# the newest of each (no version is pinned, as npm resolves them together); LAMINA_JS_DYNAMODB_TAG names the cache.
set -euo pipefail

tag="${LAMINA_JS_DYNAMODB_TAG:-v1}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lamina-tests"
dir="$cache/aws-sdk-dynamodb-$tag"
packages=(@aws-sdk/client-dynamodb @aws-sdk/lib-dynamodb @aws-sdk/client-dynamodb-streams)

if [ -f "$dir/.ready" ] && [ -f "$dir/node_modules/@aws-sdk/lib-dynamodb/package.json" ]; then
  echo "$dir/node_modules"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "prepare_js_dynamodb: npm is not installed" >&2; exit 1; }
mkdir -p "$cache"
# Install next to the final place, then rename: an interrupted run leaves nothing half-installed behind.
work="$(mktemp -d "$cache/.aws-sdk-dynamodb-$tag.XXXXXX")"
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
  printf '{"name":"lamina-js-dynamodb-tests","version":"1.0.0","private":true}\n' >package.json
  npm install --no-save --ignore-scripts --no-package-lock "${packages[@]}"
) >&2 2> >(grep -v 'Unknown user config "nodedir"' >&2) || { echo "prepare_js_dynamodb: npm install failed" >&2; exit 1; }
touch "$work/.ready"
rm -rf "$dir"
mv "$work" "$dir"
trap - EXIT
echo "$dir/node_modules"
