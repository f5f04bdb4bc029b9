#!/bin/sh
# Runs the end-to-end tests of Lamina's Node.js and Python runtime bootstraps
# against a fake Runtime API.  Last line: "runtimes: N passed, M failed".
# Usage: runtimes/test/run.sh [-v] [test-name-substring ...]
set -e
cd "$(dirname "$0")"
exec /usr/bin/python3 -u run_tests.py "$@"
