#!/usr/bin/env bash
# Runs every test: unit tests, the runtime bootstraps' tests, and the end-to-end suite (real server, real sandboxes,
# AWS CLI and boto3). Installs first what the tests need.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
. "$root/eng/prereqs.sh"
lamina_require_packages
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

echo "== build"
dotnet build Lamina.slnx -c Release -nologo -v quiet -clp:ErrorsOnly
touch artifacts/bin/Lamina.Server/release/Lamina.Server.dll

echo "== unit tests"
dotnet test tests/Lamina.Tests -c Release --no-build -nologo -v quiet

echo "== runtime bootstraps"
runtimes/test/run.sh

echo "== integration (real server, AWS CLI, boto3)"
python3 tests/integration/run.py
