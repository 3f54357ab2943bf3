"""Scaffolds through the whole pipeline: the demo in SWE-agent's scaffold and in a user's own.

Real git checkout, real bubblewrap, the embedded bus and the lake; the teacher is the scripted
double playing trajlake/teacher/scripts/demo-swe-agent.yaml, whose rollout 1 edits with
`str_replace_editor` and ends with `submit` (twice: the first shows the review), and whose
rollout 2 reproduces both of rollout 1's comment lines for functions named n-z and one for a-m.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from trajlake.cli import main
from trajlake.consumers.scaffold_spec import SCAFFOLD_DIR, load_scaffold
from trajlake.lake import Lake

pytestmark = [pytest.mark.scaffold, pytest.mark.e2e]

RECALL_ROWS = re.compile(r"^(soft|hard)\s*\|\s*(\d+)\s*\|\s*([\d.]+)$", re.M)


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main(list(argv))
    return rc, out.getvalue()


def run_demo(workdir: Path, scaffold: str) -> tuple[str, Path]:
    """`trajlake demo --workdir W --set agent.scaffold=S`, as a user types it: its output and
    the config it wrote."""
    rc, out = cli("demo", "--workdir", str(workdir), "--set", f"agent.scaffold={scaffold}")
    assert rc == 0, out
    return out, workdir / "trajlake.yaml"


def check_rollouts(config: Path, scaffold_id: str) -> None:
    """Every rollout ran in the scaffold, edited with the editor, ended with submit; the
    verdicts are what the script implies."""
    lake = Lake(load_root(config))
    con = lake.connect()
    rows = con.execute("SELECT scaffold_id, messages_json, exit_status FROM rollouts_t1").fetchall()
    assert rows
    for recorded, messages, status in rows:
        calls = [
            json.loads(c["function"]["arguments"]) | {"tool": c["function"]["name"]}
            for m in json.loads(messages)
            for c in m.get("tool_calls") or []
        ]
        assert recorded == scaffold_id and status == "Submitted"
        assert {"tool": "str_replace_editor", "command": "str_replace"}.items() <= calls[1].items()
        assert [c["tool"] for c in calls[-2:]] == ["submit", "submit"]
    verdicts = con.execute(
        "SELECT t.function_name, v.label, v.matched, v.total FROM verdicts v "
        "JOIN rollouts_t1 r ON v.t1_id = r.event_id JOIN tasks t ON r.task_id = t.event_id"
    ).fetchall()
    assert len(verdicts) == len(rows)
    for name, label, matched, total in verdicts:
        partial = name.split(".")[-1][0].lower() < "n"  # the script's a-m rule
        assert (label, matched, total) == (("soft", 3, 4) if partial else ("hard", 4, 4)), name


def load_root(config: Path) -> str:
    import yaml

    return yaml.safe_load(config.read_text())["lake"]["root"]


def test_the_demo_in_swe_agent_s_scaffold(tmp_path: Path) -> None:
    out, config = run_demo(tmp_path / "demo", "swe-agent")
    rows = RECALL_ROWS.findall(out)  # the recall table the demo prints is not empty
    assert {label for label, _, _ in rows} == {"soft", "hard"}, out
    check_rollouts(config, load_scaffold("swe-agent").id())

    assert (
        cli("--config", str(config), "mixture", "build", str(config.parent / "mixture.yaml"))[0]
        == 0
    )
    rc, out = cli("--config", str(config), "mixture", "check", "demo")
    assert rc == 0, out


def test_a_user_scaffold_from_a_file_and_what_changing_it_does(tmp_path: Path) -> None:
    mine = tmp_path / "my-agent.yaml"
    text = (SCAFFOLD_DIR / "swe-agent.yaml").read_text().replace("name: swe-agent", "name: mine")
    mine.write_text(text.replace("calling tools.", "calling tools, carefully."))
    first_id = load_scaffold(mine).id()
    _, config = run_demo(tmp_path / "demo", str(mine))
    check_rollouts(config, first_id)
    assert (
        cli("--config", str(config), "mixture", "build", str(config.parent / "mixture.yaml"))[0]
        == 0
    )
    rc, out = cli("--config", str(config), "mixture", "check", "demo")
    assert rc == 0, out

    mine.write_text(mine.read_text().replace("carefully.", "carefully!"))  # one character
    assert load_scaffold(mine).id() != first_id
    rc, out = cli("--config", str(config), "mixture", "check", "demo")
    assert rc != 0 and first_id in out, out
