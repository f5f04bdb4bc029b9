#!/usr/bin/env bash
# Runs every test: unit tests, the runtime bootstraps' tests, and the end-to-end suite (real server, real sandboxes,
# AWS CLI v1 and v2, boto3). Installs first what the tests need. Ends with one line: "total: N passed, M failed".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
. "$root/eng/prereqs.sh"
# The tests also drive Debian's AWS CLI v2 (/usr/bin/aws), besides the pip-installed CLI v1 and boto3, and the web
# console in Debian's headless Chromium through chromium-driver and python3-selenium (test_console), and test_cluster
# starts Debian's PostgreSQL 15 and nginx (issue #25).
lamina_require_packages /usr/bin/aws:awscli /usr/bin/chromium:chromium /usr/bin/chromedriver:chromium-driver \
  /usr/lib/python3/dist-packages/selenium/__init__.py:python3-selenium \
  /usr/lib/postgresql/15/bin/initdb:postgresql-15 /usr/sbin/nginx:nginx-light
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
status=0

echo "== build"
dotnet build Lamina.slnx -c Release -nologo -v quiet -clp:ErrorsOnly
touch artifacts/bin/Lamina.Server/release/Lamina.Server.dll
# The AWS SDKs the managed runtimes include (boto3, the JS SDK v3), as the launcher installs them for `serve`.
lamina_runtime_sdks "$root"

echo "== unit tests"
# A hung test fails after 10 minutes with the hung test's name and a dump, instead of holding CI until its time runs out.
dotnet test tests/Lamina.Tests -c Release --no-build -nologo -v quiet --blame-hang-timeout 10m 2>&1 | tee "$logs/unit" || status=1

echo "== runtime bootstraps"
runtimes/test/run.sh 2>&1 | tee "$logs/runtimes" || status=1

echo "== aws-lambda-ric for test_ric (installed and built once per machine)"
if LAMINA_RIC_DIR="$(tests/integration/prepare_ric.sh 2>"$logs/ric")"; then export LAMINA_RIC_DIR; else tail -n 30 "$logs/ric" >&2; fi

echo "== integration (real server, AWS CLI, boto3)"
python3 tests/integration/run.py 2>&1 | tee "$logs/integration" || status=1

passed=0 failed=0
read -r p f < <(sed -nE 's/.*Failed: +([0-9]+), Passed: +([0-9]+).*/\2 \1/p' "$logs/unit" | tail -n 1) || true
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
for stage in runtimes integration; do
  read -r p f < <(sed -nE "s/^$stage: ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/p" "$logs/$stage" | tail -n 1) || true
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
done
[ "$status" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "total: $passed passed, $failed failed"
exit "$status"
