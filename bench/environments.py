"""Run as: python bench/environments.py [--commands N] [--quick] [--no-goals]

What a sandboxed command costs, and what building a repository environment costs.

Commands: `true` N times (default 200; --quick: 20) in (a) today's bubblewrap sandbox, the
baseline (the host's / bound read-only with `--ro-bind / /`, the checkout at its host path), (b)
the new one without an environment (a tmpfs root holding the host's top-level directories
read-only, the checkout at /testbed) and (c) the new one with the repository's environment at
/env. The three run round-robin (order rotated each round), so machine drift hits all alike;
one warm-up command each is not counted. Each time is `CommandResult.duration_s`: from starting
bwrap to the end of its last process. Then `python -c "import click"` in (c), which uses the
environment's interpreter and packages.
Builds: click's environment (the built-in python spec: a uv venv, click installed editable,
pytest) cold (empty cache and empty uv download cache), warm (empty cache, uv's downloads warm)
and a cache hit (the same cache again: no build).
The repository is the click 8.5.1 sdist from PyPI in one git commit; --quick generates a tiny
setuptools project instead (the builds still fetch setuptools and pytest from PyPI).
Goal: a command in (c) costs <= 1.05x one in (b), on medians. Exits 1 on a missed goal (unless
--no-goals) and when the import fails in (c).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from argparse import ArgumentParser
from collections.abc import Callable
from pathlib import Path

from trajlake.config import Config, EnvironmentsConfig, LakeConfig, ProducerConfig, SandboxConfig
from trajlake.environments import Environment, environment_for
from trajlake.sandbox import open_sandbox
from trajlake.sandbox.base import SANDBOX_ENV, SANDBOX_PATH, limited_bash
from trajlake.sandbox.bubblewrap import ISOLATION, check_bubblewrap
from trajlake.sandbox.checkout import Checkout, create_checkout
from trajlake.sandbox.process import CommandResult, Launch, run_process

CLICK = "click==8.5.1"
GOAL = 1.05  # (c) / (b), medians
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
TINY = {
    "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\n'
    'build-backend = "setuptools.build_meta"\n\n[project]\nname = "benchpkg"\nversion = "0.1"\n\n'
    '[tool.setuptools.packages.find]\nwhere = ["src"]\n',
    "src/benchpkg/__init__.py": "def answer():\n    return 42\n",
}


def click_project(root: Path) -> tuple[Path, str]:
    """The click sdist, untarred into one git commit; (repository, module to import)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
         "--no-deps", CLICK, "-d", str(root / "sdist")],
        check=True,
    )  # fmt: skip
    [sdist] = (root / "sdist").glob("click-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(root, filter="data")
    repo = (root / sdist.name.removesuffix(".tar.gz")).rename(root / "click")
    return commit_all(repo), "click"


def tiny_project(root: Path) -> tuple[Path, str]:
    """A one-module setuptools project with no dependencies; (repository, module to import)."""
    repo = root / "benchpkg"
    for name, text in TINY.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    return commit_all(repo), "benchpkg"


def commit_all(repo: Path) -> Path:
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run([*GIT, "-C", str(repo), *args], check=True)
    return repo


def todays_launch(bwrap: str, checkout: Checkout, command: str) -> Launch:
    """The argv of the sandbox before environments: the host's / read-only, the checkout at its
    host path (trajlake/sandbox/bubblewrap.py before the change, limits included)."""
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    argv += ["--bind", str(checkout.tmp), "/tmp"]
    for path in checkout.read_paths:
        argv += ["--ro-bind", str(path), str(path)]
    argv += ["--bind", str(checkout.path), str(checkout.path), *ISOLATION, "--clearenv"]
    for key, value in (SANDBOX_ENV | {"HOME": "/tmp"}).items():
        argv += ["--setenv", key, value]
    argv += ["--chdir", str(checkout.path), "--", *limited_bash(SandboxConfig(), command)]
    return Launch(argv, env={"PATH": SANDBOX_PATH})


def build(tmp: Path, repo: Path, root: str, downloads: str) -> tuple[Environment, float]:
    """environment_for with this cache and download cache; (environment, wall seconds)."""
    config = Config(
        environments=EnvironmentsConfig(root=str(tmp / root), downloads=str(tmp / downloads)),
        lake=LakeConfig(root=str(tmp / "lake")),
        producer=ProducerConfig(registry=str(tmp / "repos.db"), mirrors=str(tmp / "mirrors")),
    )
    start = time.perf_counter()
    env = environment_for(config, repo.name, str(repo), "HEAD")
    return env, time.perf_counter() - start


def measure_commands(
    bwrap: str, repo: Path, env: Environment, module: str, commands: int
) -> tuple[dict[str, list[float]], str, list[float]]:
    """(a), (b), (c) round-robin; then the import in (c): (times, the import, its times)."""
    checkout = create_checkout(repo, "HEAD")

    def today(command: str) -> CommandResult:
        launch = todays_launch(bwrap, checkout, command)
        return run_process(launch, cwd=checkout.path, timeout_s=60, max_output_bytes=1_000_000)

    try:
        with (
            open_sandbox(SandboxConfig(), repo, "HEAD") as bare,
            open_sandbox(SandboxConfig(), repo, "HEAD", env.mount()) as with_env,
        ):
            runs = {
                "(a) today's (--ro-bind / /), baseline": today,
                "(b) new, no environment": bare.run,
                f"(c) new, {repo.name}'s environment": with_env.run,
            }
            times = round_robin(runs, commands)
            importing = f'python -c "import {module}"'
            imports = [check(with_env.run(importing), importing).duration_s for _ in range(20)]
    finally:
        checkout.remove()
    return times, importing, imports


Run = Callable[[str], CommandResult]


def round_robin(runs: dict[str, Run], commands: int) -> dict[str, list[float]]:
    """Seconds of `true` in each sandbox, one each per round, the order rotated every round."""
    for run in runs.values():
        check(run("true"), "true")  # warm-up, not counted
    names, times = list(runs), {name: [] for name in runs}
    for i in range(commands):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(check(runs[name]("true"), "true").duration_s)
    return times


def check(result: CommandResult, command: str) -> CommandResult:
    if result.returncode != 0:
        sys.exit(f"`{command}` exited {result.returncode} in a sandbox:\n{result.output[-2000:]}")
    return result


def report_commands(times: dict[str, list[float]], commands: int) -> float:
    """Prints the per-command table and ratios; returns (c)/(b) on medians."""
    print(f"sandboxed `true`: {commands} commands in each, round-robin, {os.cpu_count()} cpus")
    print(f"{'sandbox':<40} {'mean ms':>8} {'median ms':>10}")
    mean = {name: statistics.fmean(t) * 1e3 for name, t in times.items()}
    median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    for name in times:
        print(f"{name:<40} {mean[name]:>8.2f} {median[name]:>10.2f}")
    a, b, c = list(times)
    for top, bottom in ((b, a), (c, a), (c, b)):
        print(
            f"{top[:3]}/{bottom[:3]}: {mean[top] / mean[bottom]:.3f}x mean, "
            f"{median[top] / median[bottom]:.3f}x median"
        )
    return median[c] / median[b]


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--commands", type=int, help="`true` per sandbox (200; --quick: 20)")
    parser.add_argument(
        "--quick", action="store_true", help="20 commands, a generated tiny project, not click"
    )
    parser.add_argument(
        "--no-goals", action="store_true", help="print the goal, but do not exit 1 on a miss"
    )
    args = parser.parse_args()
    commands = args.commands or (20 if args.quick else 200)
    bwrap = check_bubblewrap()
    with tempfile.TemporaryDirectory(prefix="bench-env-") as name:
        tmp = Path(name)
        repo, module = tiny_project(tmp) if args.quick else click_project(tmp)
        cold, cold_s = build(tmp, repo, "envs-cold", "downloads")
        warm, warm_s = build(tmp, repo, "envs-warm", "downloads")
        hit, hit_s = build(tmp, repo, "envs-warm", "downloads")
        times, importing, imports = measure_commands(bwrap, repo, hit, module, commands)
    ratio = report_commands(times, commands)
    print(
        f"{importing} in (c): 20 runs, mean {statistics.fmean(imports) * 1e3:.1f} ms, "
        f"median {statistics.median(imports) * 1e3:.1f} ms"
    )
    report_builds(repo.name, [cold, warm, hit], [cold_s, warm_s, hit_s])
    met = ratio <= GOAL
    print(f"goal: (c) <= {GOAL}x (b) per command, on medians: {'met' if met else 'MISSED'} "
          f"({ratio:.3f}x)")  # fmt: skip
    sys.exit(None if met or args.no_goals else f"goal missed: (c)/(b) {ratio:.3f}x > {GOAL}x")


def report_builds(name: str, envs: list[Environment], seconds: list[float]) -> None:
    """Prints cold, warm and cache-hit times: wall (environment_for) and the installs alone."""
    cold, warm, hit = envs
    print(f"{name}'s environment ({len(cold.meta['packages'])} packages, "
          f"{cold.meta['size_bytes'] / 1e6:.0f} MB, key {cold.environment_id})")  # fmt: skip
    print(f"{'build':<44} {'wall s':>8} {'installs s':>10} {'vs cold':>8}")
    rows = [
        ("cold (empty cache and downloads)", seconds[0], cold.meta["seconds"]),
        ("warm (empty cache, uv's downloads warm)", seconds[1], warm.meta["seconds"]),
        ("cache hit (the same cache again)", seconds[2], None),
    ]
    for label, wall, installs in rows:
        shown = f"{installs:>10.2f}" if installs is not None else f"{'-':>10}"
        print(f"{label:<44} {wall:>8.3f} {shown} {wall / seconds[0]:>8.3f}")
    if hit.root != warm.root:
        sys.exit(f"the cache hit found {hit.root}, not the warm build's {warm.root}")


if __name__ == "__main__":
    main()
