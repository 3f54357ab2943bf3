"""The counts of one test run, read the way the spec says: a JUnit XML report or the summary
line the runner prints itself (pytest, node's test runner, mocha, jest)."""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from trajlake.environments.spec import EnvSpec
from trajlake.sandbox import CommandResult, Sandbox


@dataclass(frozen=True)
class TestCounts:
    """passed, failed (failures and errors), skipped; `found` is False when nothing was read."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    found: bool = False

    def line(self) -> str:
        if not self.found:
            return "no test counts found in the output"
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"


def from_junit(xml: str) -> TestCounts:
    """Counts from a JUnit XML report: <testsuites> or one <testsuite>, summed over suites."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return TestCounts()
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    total = failed = skipped = 0
    for suite in suites:
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return TestCounts(total - failed - skipped, failed, skipped, True)


#: (pattern, which count) for summary lines runners print: pytest's `3 passed, 1 failed`,
#: node's `# pass 3` / `# fail 1`, mocha's `3 passing`, jest's `Tests: 1 failed, 3 passed`.
_COUNTS = [
    (r"(\d+) (?:passed|passing)\b", "passed"),
    (r"(\d+) (?:failed|failing|errors?)\b", "failed"),
    (r"(\d+) (?:skipped|pending|xfailed)\b", "skipped"),
    (r"^# pass (\d+)$", "passed"),
    (r"^# fail (\d+)$", "failed"),
    (r"^# skip(?:ped)? (\d+)$", "skipped"),
]


def from_summary(output: str) -> TestCounts:
    """Counts from the last lines that carry any: the runner's closing summary."""
    lines = output.splitlines()
    for end in range(len(lines), 0, -1):  # the last summary block wins over progress lines
        window = "\n".join(lines[max(0, end - 8) : end])
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        found = False
        for pattern, name in _COUNTS:
            for match in re.finditer(pattern, window, re.MULTILINE):
                counts[name] = int(match.group(1))
                found = True
        if found:
            return TestCounts(**counts, found=True)
    return TestCounts()


def run_tests(
    box: Sandbox, spec: EnvSpec, timeout_s: float | None = None
) -> tuple[CommandResult, TestCounts]:
    """Run the spec's test command in `box`; (the command's result, its counts)."""
    result = box.run(spec.test, timeout_s=timeout_s)
    if spec.results == "junit":
        report = box.run(f"cat {shlex.quote(spec.junit_path())}")
        counts = from_junit(report.output) if report.returncode == 0 else TestCounts()
    else:
        counts = from_summary(result.output)
    return result, counts
