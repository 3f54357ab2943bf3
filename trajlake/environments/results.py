"""What one test run did, read the way the spec says: per test from a JUnit XML report or from
the runner's log (the swebench package's parsers), or counts only from the summary line the
runner prints itself (pytest, node's test runner, mocha, jest)."""

from __future__ import annotations

import importlib
import re
import shlex
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from trajlake.environments.spec import EnvSpec
from trajlake.errors import ConfigError
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


@dataclass(frozen=True)
class TestResult:
    """One test: the runner's id for it, how it came out (passed, failed, error, skipped), its
    seconds (0 when the runner does not say) and the test file it is in ('' when unknown)."""

    test_id: str
    status: str
    seconds: float = 0.0
    file: str = ""


def junit_tests(xml: str, files: Sequence[str] = ()) -> list[TestResult] | None:
    """Every <testcase> of a JUnit report (None: not a report). pytest's ids are rebuilt as
    `path::Class::name` from the dotted classname and the test files that were run."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    dotted = {f.removesuffix(".py").replace("/", "."): f for f in files}
    found = []
    for case in root.iter("testcase"):
        name, classname = case.get("name", ""), case.get("classname", "")
        status = "passed"
        for child, what in (("skipped", "skipped"), ("failure", "failed"), ("error", "error")):
            if case.find(child) is not None:
                status = what
        file, test_id = _pytest_id(classname, name, dotted, case.get("file", ""))
        found.append(TestResult(test_id, status, float(case.get("time") or 0), file))
    return found


def _pytest_id(classname: str, name: str, dotted: dict[str, str], file: str) -> tuple[str, str]:
    """(file, id) of a testcase; a collection error has no classname and the module's name."""
    if not classname and name in dotted:
        return dotted[name], dotted[name]
    for module, path in sorted(dotted.items(), key=lambda item: -len(item[0])):
        if classname == module or classname.startswith(module + "."):
            inner = classname[len(module) + 1 :].split(".") if classname != module else []
            return path, "::".join([path, *filter(None, inner), name])
    return file, f"{classname}::{name}" if classname else name


#: results name -> (module of swebench.harness.log_parsers, function): a runner's log per test.
LOG_PARSERS = {
    "pytest-log": ("python", "parse_log_pytest"),  # pytest -rA: PASSED path::name lines
    "tap": ("javascript", "parse_log_tap"),
    "jest": ("javascript", "parse_log_jest"),  # jest --verbose
    "vitest": ("javascript", "parse_log_vitest"),  # vitest --reporter=verbose
    "go": ("go", "parse_log_gotest"),  # go test -v
    "cargo": ("rust", "parse_log_cargo"),
    "maven": ("java", "parse_log_maven"),
    "phpunit": ("php", "parse_log_phpunit"),
}
_SWEBENCH_STATUS = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error"}


def log_tests(parser: str, log: str) -> list[TestResult]:
    """Every test the runner's log names, read by swebench's parser for it."""
    module, function = LOG_PARSERS[parser]
    try:
        parsers = importlib.import_module(f"swebench.harness.log_parsers.{module}")
    except ImportError:
        raise ConfigError(
            f"results: {parser} reads logs with the swebench package: "
            "pip install 'trajlake[swesmith]', or use results: junit"
        ) from None
    statuses = getattr(parsers, function)(log, None)
    return [TestResult(t, _SWEBENCH_STATUS.get(s, "skipped")) for t, s in statuses.items()]


def per_test(
    box: Sandbox, spec: EnvSpec, result: CommandResult, files: Sequence[str] = ()
) -> list[TestResult] | None:
    """The tests of a run of `spec.test` in `box`, per test; None when nothing can be read (no
    report, or a spec whose results are counts only)."""
    if spec.results == "junit":
        report = box.run(f"cat {shlex.quote(spec.junit_path())}")
        return junit_tests(report.output, files) if report.returncode == 0 else None
    if spec.results in LOG_PARSERS:
        return log_tests(spec.results, result.output) or None
    return None


def counts_of(tests: list[TestResult]) -> TestCounts:
    by = Counter(t.status for t in tests)
    return TestCounts(by["passed"], by["failed"] + by["error"], by["skipped"], True)


def run_tests(
    box: Sandbox, spec: EnvSpec, timeout_s: float | None = None
) -> tuple[CommandResult, TestCounts]:
    """Run the spec's test command in `box`; (the command's result, its counts)."""
    result = box.run(spec.test, timeout_s=timeout_s)
    if spec.results == "summary":
        return result, from_summary(result.output)
    tests = per_test(box, spec, result)
    return result, counts_of(tests) if tests is not None else TestCounts()
