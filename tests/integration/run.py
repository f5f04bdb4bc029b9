#!/usr/bin/env python3
"""Runs Lamina's integration suite and ends with one summary line.

    python3 tests/integration/run.py                 # everything
    python3 tests/integration/run.py -k timeout      # tests whose id contains "timeout"
    python3 tests/integration/run.py test_invoke     # one module (several allowed)
    python3 tests/integration/run.py -x              # stop at the first failure

Last line: ``integration: N passed, M failed, K skipped``; exit status 1 on any failure or error.
Equivalent plain runner: python3 -m unittest discover -s tests/integration -t tests/integration -v
"""
from __future__ import annotations

import argparse
import sys
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent


class CountingResult(unittest.TextTestResult):
    """Counts outcomes per test (a test with failing subtests counts once)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed_ids: set[str] = set()
        self.failed_ids: set[str] = set()
        self.skipped_ids: set[str] = set()

    @staticmethod
    def _key(test) -> str:
        parent = getattr(test, "test_case", None)  # _SubTest -> its test
        return (parent or test).id() if hasattr(parent or test, "id") else str(test)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed_ids.add(self._key(test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.failed_ids.add(self._key(test))

    def addError(self, test, err):
        super().addError(test, err)  # also setUpModule/tearDownModule errors (_ErrorHolder)
        self.failed_ids.add(self._key(test))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.failed_ids.add(self._key(test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.skipped_ids.add(self._key(test))

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.passed_ids.add(self._key(test))

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.failed_ids.add(self._key(test))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modules", nargs="*", help="test modules to run (default: discover all)")
    ap.add_argument("-k", dest="patterns", action="append", default=[],
                    help="only tests whose id contains this substring (repeatable)")
    ap.add_argument("-x", "--failfast", action="store_true")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(HERE))
    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = [f"*{p}*" for p in args.patterns]
    if args.modules:
        names = [m[:-3] if m.endswith(".py") else m for m in (Path(m).name for m in args.modules)]
        suite = loader.loadTestsFromNames(names)
    else:
        suite = loader.discover(start_dir=str(HERE), pattern="test*.py", top_level_dir=str(HERE))

    runner = unittest.TextTestRunner(verbosity=1 if args.quiet else 2, failfast=args.failfast,
                                     resultclass=CountingResult, stream=sys.stderr)
    t0 = time.monotonic()
    result: CountingResult = runner.run(suite)  # type: ignore[assignment]
    failed = result.failed_ids
    passed = result.passed_ids - failed
    skipped = result.skipped_ids - failed - passed
    sys.stderr.flush()
    print(f"(took {time.monotonic() - t0:.1f} s)")
    print(f"integration: {len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped")
    sys.stdout.flush()
    return 1 if failed or not result.wasSuccessful() else 0


if __name__ == "__main__":
    sys.exit(main())
