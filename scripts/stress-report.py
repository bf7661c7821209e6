#!/usr/bin/env python3
"""The report of `./dev stress`: reads the logs of its runs of the test stage (cargo test's
libtest output, with per-test times from scripts/timed-test) and prints, per test, how many runs
it failed and its slowest time; then each run's wall time and counts.

Usage: stress-report.py RUN_LOG... (one log per run, each ending with a line
`stress: run N wall Ss exit C` written by ./dev).
"""

import re
import sys
from collections import defaultdict

# cargo: `     Running tests/e2e/main.rs (target/debug/deps/e2e-0123abcd)` or
# `     Running unittests src/lib.rs (/work/target/debug/deps/entraguard_core-0123abcd)`.
RUNNING = re.compile(r"^\s+Running (?:unittests )?(\S+) \((?:.*/)?([A-Za-z0-9_-]+?)(?:-[0-9a-f]{16})?\)\s*$")
DOCTESTS = re.compile(r"^\s+Doc-tests (\S+)")
# libtest: `test lanes::x ... ok <1.234s>`, `test x ... FAILED <0.1s>`, `test x ... ignored`.
RESULT = re.compile(r"^test (.+?) \.\.\. (ok|FAILED|ignored)(?:, .*?)?(?: <([0-9.]+)s>)?\s*$")
END = re.compile(r"^stress: run (\d+) wall (\d+)s exit (\d+)")


def binary_label(source, binary):
    """`e2e`, `cli`, `entraguard_core`, `entraguard_admin (src/main.rs)`."""
    return f"{binary} ({source})" if source == "src/main.rs" else binary


def main(paths):
    fails = defaultdict(int)
    seen = defaultdict(int)
    slowest = {}
    runs = []
    for path in paths:
        label = "?"
        passed = failed = 0
        wall = code = None
        with open(path, errors="replace") as log:
            for line in log:
                line = line.rstrip("\n")
                if m := RUNNING.match(line):
                    label = binary_label(m.group(1), m.group(2))
                elif m := DOCTESTS.match(line):
                    label = f"{m.group(1)} (doc)"
                elif m := RESULT.match(line):
                    name, status, secs = m.groups()
                    if status == "ignored":
                        continue
                    key = f"{label}: {name}"
                    seen[key] += 1
                    if status == "FAILED":
                        fails[key] += 1
                        failed += 1
                    else:
                        passed += 1
                    if secs is not None:
                        slowest[key] = max(slowest.get(key, 0.0), float(secs))
                elif m := END.match(line):
                    wall, code = int(m.group(2)), int(m.group(3))
        runs.append((path, passed, failed, wall, code))

    rows = sorted(seen, key=lambda k: (-fails[k], -slowest.get(k, -1.0), k))
    print(f"{'failed':>8}  {'slowest':>9}  test")
    for key in rows:
        time = f"{slowest[key]:8.2f}s" if key in slowest else "        -"
        print(f"{fails[key]:>3} of {seen[key]:<2} {time}  {key}")
    print()
    for i, (path, passed, failed, wall, code) in enumerate(runs, 1):
        state = "green" if code == 0 and failed == 0 else f"RED (exit {code})"
        print(f"run {i}: {state}, {passed} passed, {failed} failed, {wall}s  ({path})")
    green = sum(1 for r in runs if r[4] == 0 and r[2] == 0)
    flaky = sum(1 for k in seen if fails[k])
    print(f"{green} of {len(runs)} runs green; {flaky} test(s) failed at least once")
    return 0 if green == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
