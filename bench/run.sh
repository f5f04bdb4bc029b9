#!/usr/bin/env bash
# Lamina's benchmarks, side by side in one run: ./bench/run.sh [warm|cold|burst|memory|async|all|s3|dynamodb|cluster|soak|runtimes]
# Installs what it needs first (wrk from Debian, serverless@3 + serverless-offline@13 from npm, cached), builds
# Lamina in Release (the launcher does; bench/KestrelFloor is built on first use), then prints one table per scenario.
# Figures go to docs/BENCHMARKS.md by hand. Two builds side by side: bench/ab.py; the server's CPU per invoke by thread:
# bench/threads.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scenario="${1:-all}"

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "bench: installing wrk" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
  else
    echo "bench: wrk is missing: apt-get install wrk" >&2
    exit 1
  fi
fi

sls="${LAMINA_BENCH_CACHE:-$HOME/.cache/lamina-bench}/serverless"
if [ "$scenario" = all ] || [ "$scenario" = warm ]; then
  if [ ! -x "$sls/node_modules/.bin/serverless" ]; then
    echo "bench: installing serverless@3 and serverless-offline@13 into $sls" >&2
    mkdir -p "$sls"
    (cd "$sls" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error serverless@3 serverless-offline@13 >/dev/null)
  fi
fi

if [ "$scenario" = s3 ]; then
  peer="${LAMINA_BENCH_CACHE:-$HOME/.cache/lamina-bench}/s3rver"
  if [ ! -x "$peer/node_modules/.bin/s3rver" ]; then
    echo "bench: installing s3rver into $peer" >&2
    mkdir -p "$peer"
    (cd "$peer" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error s3rver >/dev/null)
  fi
  "$root/lamina" help >/dev/null
  exec python3 "$root/bench/s3.py"
fi

# The launcher builds Lamina (Release) if sources are newer than the binary; do it once here, not inside a timing.
"$root/lamina" help >/dev/null

# The bootstraps' own CPU per invoke outside any sandbox, beside each language's floor (no server involved).
if [ "$scenario" = runtimes ]; then
  exec python3 "$root/bench/runtime_floor.py" "${@:2}"
fi

# One warm environment kept busy for minutes, window by window (does anything grow with use?), its own script.
if [ "$scenario" = soak ]; then
  exec python3 "$root/bench/soak.py" "${@:2}"
fi

# Several nodes on PostgreSQL behind nginx (issue #25), its own script.
if [ "$scenario" = cluster ]; then
  . "$root/eng/prereqs.sh"
  lamina_require_packages /usr/lib/postgresql/15/bin/initdb:postgresql-15 /usr/sbin/nginx:nginx-light
  exec python3 "$root/bench/cluster.py" "${@:2}"
fi

# DynamoDB (issue #21): Lamina beside dynalite (npm, LevelDB), its own script.
if [ "$scenario" = dynamodb ]; then
  dynalite="${LAMINA_BENCH_CACHE:-$HOME/.cache/lamina-bench}/dynalite"
  if [ ! -x "$dynalite/node_modules/.bin/dynalite" ]; then
    echo "bench: installing dynalite into $dynalite" >&2
    mkdir -p "$dynalite"
    (cd "$dynalite" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error dynalite >/dev/null)
  fi
  exec python3 "$root/bench/dynamodb.py" "${@:2}"
fi
export LAMINA_BENCH_SERVERLESS="$sls"
exec python3 "$root/bench/compare.py" "$scenario"
