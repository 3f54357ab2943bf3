"""Per-test results read from recorded runner output: pytest's JUnit XML (ids rebuilt as pytest
prints them), and runners' logs through the swebench package's parsers."""

from __future__ import annotations

import pytest

from trajlake.environments.results import junit_tests, log_tests

#: pytest 9 --junitxml over tests/test_k.py (a class, a parametrized test, a skip) and
#: tests/test_broken.py (an import error), run with --continue-on-collection-errors.
PYTEST_JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite
name="pytest" errors="1" failures="1" skipped="1" tests="5" time="0.043"><testcase classname=""
name="tests.test_broken" time="0.000"><error message="collection failure">ImportError</error>
</testcase><testcase classname="tests.test_k.TestBox" name="test_open" time="0.000" /><testcase
classname="tests.test_k.TestBox" name="test_n[1]" time="0.25" /><testcase
classname="tests.test_k.TestBox" name="test_n[2]" time="0.001"><failure message="assert 2 == 1"
>E   assert 2 == 1</failure></testcase><testcase classname="tests.test_k" name="test_skip"
time="0.000"><skipped type="pytest.skip" message="no">no</skipped></testcase></testsuite>
</testsuites>"""


def test_pytest_junit_gives_pytest_ids_files_and_statuses():
    found = junit_tests(PYTEST_JUNIT, ["tests/test_k.py", "tests/test_broken.py"])
    assert [(t.test_id, t.status, t.file) for t in found] == [
        ("tests/test_broken.py", "error", "tests/test_broken.py"),
        ("tests/test_k.py::TestBox::test_open", "passed", "tests/test_k.py"),
        ("tests/test_k.py::TestBox::test_n[1]", "passed", "tests/test_k.py"),
        ("tests/test_k.py::TestBox::test_n[2]", "failed", "tests/test_k.py"),
        ("tests/test_k.py::test_skip", "skipped", "tests/test_k.py"),
    ]
    assert found[2].seconds == 0.25
    assert junit_tests("Traceback (most recent call last):") is None  # no report


def test_other_junit_reports_keep_their_own_names():
    xml = (
        '<testsuite tests="1"><testcase classname="Calc" name="adds" file="a.test.js"/></testsuite>'
    )
    [one] = junit_tests(xml)
    assert (one.test_id, one.file, one.status) == ("Calc::adds", "a.test.js", "passed")


#: pytest -rA's short summary (what swebench's parse_log_pytest reads)
PYTEST_RA = """\
tests/test_k.py ..Fs                                                     [100%]
=========================== short test summary info ============================
PASSED tests/test_k.py::TestBox::test_open
PASSED tests/test_k.py::TestBox::test_n[1]
ERROR tests/test_broken.py
FAILED tests/test_k.py::TestBox::test_n[2] - assert 2 == 1
"""
#: node 20's test runner, --test-reporter=tap
NODE_TAP = """\
TAP version 13
# Subtest: adds
ok 1 - adds
  ---
  duration_ms: 0.6
  ...
# Subtest: fails
not ok 2 - fails
  ---
  duration_ms: 1.2
  ...
1..2
"""
#: jest --verbose
JEST = """\
 PASS  src/sum.test.js
  sum
    ✓ adds 1 + 2 (3 ms)
    ✕ adds strings (1 ms)
    ○ skipped later
"""
#: go test -v
GO = """\
=== RUN   TestAdd
--- PASS: TestAdd (0.00s)
=== RUN   TestSub
--- FAIL: TestSub (0.00s)
FAIL
"""


@pytest.mark.parametrize(
    ("parser", "log", "expected"),
    [
        ("pytest-log", PYTEST_RA, {
            "tests/test_k.py::TestBox::test_open": "passed",
            "tests/test_k.py::TestBox::test_n[1]": "passed",
            "tests/test_broken.py": "error", "tests/test_k.py::TestBox::test_n[2]": "failed",
        }),
        ("tap", NODE_TAP, {"- adds": "passed", "- fails": "failed"}),
        ("jest", JEST, {
            "adds 1 + 2": "passed", "adds strings": "failed", "skipped later": "skipped",
        }),
        ("go", GO, {"TestAdd": "passed", "TestSub": "failed"}),
    ],
)  # fmt: skip
def test_runner_logs_are_read_per_test_by_swebench_parsers(parser, log, expected):
    assert {t.test_id: t.status for t in log_tests(parser, log)} == expected
