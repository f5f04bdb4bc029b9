#!/usr/bin/env bash
# Prepares AWS's Node.js runtime interface client (npm aws-lambda-ric) for test_ric.py, once per machine:
#   - installs the Debian packages its native part needs to build (autoconf automake libtool cmake g++ make),
#     as root, running apt-get update first only when something is missing;
#   - installs the pinned aws-lambda-ric into a cache dir outside the repo and builds its native client
#     (npm runs no install scripts until they are approved: `npm install-scripts approve`, then `npm rebuild`);
#   - prints the package's directory (…/node_modules/aws-lambda-ric, with package.json, bin/ and dist/ holding
#     dist/rapid-client.node) as the last line of stdout. Everything else goes to stderr.
# A second run finds the finished install and only prints the path.
# Exit status: 0 ready; 2 cannot prepare on this machine (not root and build tools missing, no npm/node);
# 1 the preparation itself failed (a bug or a broken download: the tests must fail, not skip).
#
# Env: LAMINA_RIC_VERSION (default 3.3.0, the last release that runs on Node.js 20: 4.x needs Node >= 22),
#      XDG_CACHE_HOME (default ~/.cache); the install lands in $XDG_CACHE_HOME/lamina-tests/aws-lambda-ric-<version>.
set -euo pipefail

version="${LAMINA_RIC_VERSION:-3.3.0}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lamina-tests"
dir="$cache/aws-lambda-ric-$version"
pkg="$dir/node_modules/aws-lambda-ric"

ready() {
  [ -f "$dir/.ready" ] && [ -f "$pkg/package.json" ] && [ -f "$pkg/bin/index.mjs" ] \
    && [ -f "$pkg/dist/index.mjs" ] && [ -f "$pkg/dist/rapid-client.node" ]
}

if ready; then
  echo "$pkg"
  exit 0
fi

log() { echo "prepare_ric: $*" >&2; }

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "$tool is not installed; cannot prepare aws-lambda-ric"
    exit 2
  fi
done

# Build tools for the native client (curl and aws-lambda-cpp are built from the package's own tarballs).
missing=()
for pair in autoconf:autoconf automake:automake libtoolize:libtool cmake:cmake g++:g++ make:make; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing build tools: ${missing[*]}; not root, so cannot install them (sudo apt-get install -y ${missing[*]})"
    exit 2
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >&2 || {
    log "apt-get install ${missing[*]} failed"
    exit 1
  }
fi

mkdir -p "$cache"
# Build next to the final place, then rename: an interrupted run leaves no half-built install behind.
work="$(mktemp -d "$cache/.aws-lambda-ric-$version.XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$SECONDS
log "installing aws-lambda-ric@$version into $dir (builds curl and aws-lambda-cpp: a few minutes)"
(
  cd "$work"
  export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
  # the package's scripts run plain `make` (curl, aws-lambda-cpp) and node-gyp: use every core
  export MAKEFLAGS="-j$(nproc)" JOBS="$(nproc)"
  printf '{"name":"lamina-ric-tests","version":"1.0.0","private":true}\n' >package.json
  npm install --no-save --ignore-scripts --no-package-lock "aws-lambda-ric@$version"
  npm install-scripts approve aws-lambda-ric
  npm rebuild aws-lambda-ric --foreground-scripts
) >&2 2> >(grep -v 'Unknown user config "nodedir"' >&2) || {
  log "npm install/rebuild of aws-lambda-ric@$version failed"
  exit 1
}
if [ ! -f "$work/node_modules/aws-lambda-ric/dist/rapid-client.node" ]; then
  log "the native client was not built: $work/node_modules/aws-lambda-ric/dist/rapid-client.node is missing"
  exit 1
fi
touch "$work/.ready"
rm -rf "$dir"
mv "$work" "$dir"
trap - EXIT
log "ready after $((SECONDS - started)) s"
echo "$pkg"
