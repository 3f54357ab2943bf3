"""`trajlake demo`: the whole SVG pipeline on a generated repository, on one machine.

Everything is real except the teacher, which is the scripted OpenAI-compatible double: a git
repository with a few commits, the embedded bus, bubblewrap sandboxes, a tokenizer trained on
the spot, the Parquet lake. Running it again on the same directory adds nothing: the sample
repository is rebuilt with identical commits (fixed authors and dates) or reused, and every
id is deterministic.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trajlake import preflight
from trajlake.bus import open_bus
from trajlake.config import Config, load_config
from trajlake.consumers.scaffold_spec import Scaffold, load_scaffold
from trajlake.lake import Lake
from trajlake.pipeline import StageStatus, run_pipeline
from trajlake.producers.commits import watch
from trajlake.repos import Registry
from trajlake.schemas import TOPICS
from trajlake.stages import BUILTIN
from trajlake.teacher.double import demo_script_path, serve
from trajlake.teacher.script import Script, as_text_actions, load_script
from trajlake.tokenizer import train_tiny_tokenizer

SAMPLE_COMMITS: list[tuple[str, dict[str, str]]] = [
    (
        "Add the inventory package",
        {
            "inventory/__init__.py": '"""A tiny inventory: items, stock levels and orders."""\n',
            "inventory/stock.py": (
                "class Stock:\n"
                '    """Quantities on hand, per item name."""\n\n'
                "    def __init__(self):\n        self.levels = {}\n\n"
                "    def add(self, item, quantity):\n"
                "        self.levels[item] = self.levels.get(item, 0) + quantity\n"
                "        return self.levels[item]\n\n"
                "    def remove(self, item, quantity):\n"
                "        self.levels[item] = self.levels.get(item, 0) - quantity\n"
                "        return self.levels[item]\n"
            ),
            "inventory/orders.py": (
                "from inventory.stock import Stock\n\n\n"
                "def order_total(lines, prices):\n"
                "    total = 0\n    for item, quantity in lines:\n"
                "        total += prices[item] * quantity\n    return total\n\n\n"
                "def fulfil(stock: Stock, lines):\n"
                "    for item, quantity in lines:\n        stock.remove(item, quantity)\n"
                "    return [item for item, _ in lines]\n"
            ),
        },
    ),
    (
        "Parse order lines from text\n\nOrders arrive as 'item x quantity' lines from the web form;"
        " this adds the parser the import job needs, skipping blank lines.",
        {
            "inventory/parse.py": (
                "def parse_line(text):\n"
                '    item, _, quantity = text.partition(" x ")\n'
                "    return item.strip(), int(quantity)\n\n\n"
                "def parse_order(text):\n"
                "    return [parse_line(line) for line in text.splitlines() if line.strip()]\n"
            ),
        },
    ),
    (
        "Report low stock",
        {
            "inventory/report.py": (
                "def low_stock(levels, threshold=5):\n"
                "    return sorted(item for item, qty in levels.items() if qty < threshold)\n\n\n"
                "def format_report(items):\n"
                '    return "\\n".join(f"- {item}" for item in items) or "all stocked"\n'
            ),
        },
    ),
]

QUERIES = [
    (
        "Verdicts by label",
        "SELECT label, count(*) AS n, round(avg(recall), 2) AS recall FROM verdicts GROUP BY 1",
    ),
    (
        "Everything about one task, joined by lineage",
        "SELECT t.function_name, r1.self_eval, v.label, v.recall, s.truncation_ratios[1] AS trunc\n"
        "  FROM tasks t JOIN rollouts_t1 r1 ON r1.task_id = t.event_id\n"
        "  JOIN verdicts v ON v.t1_id = r1.event_id\n"
        "  JOIN samples s ON s.rollout_id = r1.event_id LIMIT 5",
    ),
    (
        "Teacher spend per rollout",
        "SELECT rollout, count(*) AS n, sum(prompt_tokens + completion_tokens) AS tokens\n"
        "  FROM (SELECT * FROM rollouts_t1 UNION ALL BY NAME SELECT * FROM rollouts_t2) GROUP BY 1",
    ),
    (
        "Candidates for a training mixture (one row per rollout, all measurements joined)",
        "SELECT rollout, label, count(*) AS n, round(avg(truncation_ratio), 2) AS trunc,\n"
        "  max(patch_lines) AS max_patch FROM trajectories GROUP BY ALL ORDER BY ALL",
    ),
]

#: The mixture spec the demo writes next to its config: T2 soft-verified plus small T1 patches.
DEMO_MIXTURE = """\
name: demo
seed: 0
context_budget: 2048          # the demo's trajectories are ~2k tokens; some get cut here
order: truncation
sources:
  - name: t2-verified
    rollout: t2
    min_recall: 0.5
    exit_status: [Submitted]
    count: 6
  - name: t1-small
    rollout: t1
    max_patch_lines: 40
    exit_status: [Submitted]
    count: 6
"""


def demo_mixture(scaffold: Scaffold) -> str:
    """The demo's mixture spec; a text scaffold's prompts alone are ~2k tokens of the demo's
    tokenizer, so its trajectories are selected at the 32K budget the filter also measures."""
    if not scaffold.text_actions:
        return DEMO_MIXTURE
    return DEMO_MIXTURE.replace(
        "context_budget: 2048          # the demo's trajectories are ~2k tokens; some get cut here",
        "context_budget: 32768         # a text scaffold's prompts alone are ~2k tokens",
    )


@dataclass
class DemoResult:
    workdir: Path
    config: Config
    counts: dict[str, int]
    statuses: list[StageStatus]
    notes: list[str]  # preflight warnings


def build_sample_repo(path: Path) -> Path:
    """The sample repository; identical commits every time (fixed author, committer and dates)."""
    if (path / ".git").exists():
        return path
    path.mkdir(parents=True)
    git = _git(path)
    git("init", "-q", "-b", "main")
    for number, (message, files) in enumerate(SAMPLE_COMMITS):
        for name, text in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(text)
        git("add", "-A")
        git("commit", "-q", "-m", message, date=f"2026-01-0{number + 1}T12:00:00+00:00")
    return path


def _git(repo: Path) -> Callable[..., None]:
    def run(*args: str, date: str = "2026-01-01T12:00:00+00:00") -> None:
        who = {"NAME": "trajlake demo", "EMAIL": "demo@trajlake.invalid", "DATE": date}
        env = {**os.environ, **{f"GIT_AUTHOR_{k}": v for k, v in who.items()}}
        env |= {f"GIT_COMMITTER_{k}": v for k, v in who.items()}
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)

    return run


def demo_config(workdir: Path, teacher_url: str, overrides: list[str]) -> Config:
    data = workdir / "data"
    return load_config(
        None,
        [
            f"bus.path={data / 'bus.db'}",
            f"lake.root={data / 'lake'}",
            f"lake.mixtures={data / 'mixtures'}",
            f"producer.registry={data / 'repos.db'}",
            f"producer.mirrors={data / 'mirrors'}",
            f"agent.trajectories={data / 'trajectories'}",
            f"filter.tokenizer={data / 'tokenizer'}",
            f"teacher.base_url={teacher_url}",
            "teacher.endpoint_kind=double",
            "teacher.max_retries=2",
            "sampler.mode=changed",
            "filter.budgets=[1024, 2048, 32768]",  # the sample trajectories are ~2k tokens
            "agent.no_progress_s=120",
            *overrides,
        ],
    )


def demo_script_for(scaffold: Scaffold) -> Script:
    """The teacher double's script for a scaffold: the one for SWE-agent's tools when it has
    them (`str_replace_editor` and `submit`), else the bash-only one, its calls written as
    fenced blocks for a scaffold whose actions are text."""
    swe_agent = {"str_replace_editor", "submit"} <= {tool.name for tool in scaffold.tools}
    script = load_script(demo_script_path("demo-swe-agent" if swe_agent else "demo"))
    if scaffold.text_actions:
        return as_text_actions(script, scaffold.text_actions.language)
    return script


def ensure_tokenizer(repo: Path, out_dir: Path) -> None:
    """A student tokenizer trained on the sample repository (no download possible or needed)."""
    if (out_dir / "tokenizer.json").exists():
        return
    texts = [p.read_text() for p in sorted(repo.rglob("*.py"))] * 20
    train_tiny_tokenizer(texts, out_dir, vocab_size=400)


def run_demo(
    workdir: Path,
    overrides: list[str] = (),
    on_progress: Callable[[list[StageStatus]], None] | None = None,
) -> DemoResult:
    """The demo, once its sandbox and teacher are known to work (`trajlake.preflight`): a
    failed check raises before anything is written to the workdir's bus or lake."""
    workdir = workdir.resolve()
    scaffold = load_scaffold(demo_config(workdir, "http://unused", list(overrides)).agent.scaffold)
    with serve(demo_script_for(scaffold)) as double:
        config = demo_config(workdir, double.url, list(overrides))
        notes = preflight.check(config, BUILTIN)  # the teacher: the double just started
        repo = build_sample_repo(workdir / "sample-repo")
        ensure_tokenizer(repo, Path(config.filter.tokenizer))
        registry = Registry(config.producer.registry, config.producer.mirrors)
        if "sample-repo" not in {r.name for r in registry.list()}:  # else: only what is new
            registry.add(str(repo), branch="main", name="sample-repo", backfill=len(SAMPLE_COMMITS))
        bus = open_bus(config.bus)
        try:
            bus.create_topics(list(TOPICS), config.bus.partitions)
            watch(config, once=True)
            statuses = run_pipeline(config, bus, on_progress=on_progress)
        finally:
            bus.close()
    spec = workdir / "mixture.yaml"
    if not spec.exists():
        spec.write_text(demo_mixture(scaffold))
    return DemoResult(workdir, config, Lake(config.lake.root).counts(), statuses, notes)
