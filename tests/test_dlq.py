"""Dead-letter re-drive: rollouts that failed for want of bubblewrap complete once it is back.

The demo's pipeline runs with bubblewrap gone from PATH after the preflight would have passed
(it was uninstalled under a running pipeline): every rollout 1 becomes a dead letter. With
bubblewrap back, `trajlake dlq retry` (the CLI, in-process) sends them back to rollout1 and runs
the pipeline: every task then goes all the way, `dlq list` counts nothing open, the dead
letters stay in the lake as history, and a second retry adds no row. Real git, bubblewrap,
embedded bus and lake; the teacher is the scripted double over HTTP.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import write_config

from trajlake.bus import open_bus
from trajlake.cli import main
from trajlake.demo import SAMPLE_COMMITS, build_sample_repo, demo_config, ensure_tokenizer
from trajlake.lake import Lake
from trajlake.pipeline import run_pipeline
from trajlake.producers.commits import watch
from trajlake.producers.redrive import open_counts
from trajlake.repos import Registry
from trajlake.schemas import TOPICS
from trajlake.teacher.double import demo_script_path, serve

pytestmark = pytest.mark.e2e

FULL = ("rollouts.t1", "prs", "rollouts.t2", "verdicts")


def path_without_bwrap(tmp_path: Path) -> str:
    """PATH with every directory that holds bwrap replaced by a copy of it without bwrap."""
    bwrap = shutil.which("bwrap") or pytest.fail("the test needs bubblewrap installed")
    home = Path(bwrap).resolve().parent  # /bin and /usr/bin may be one directory
    shadow = tmp_path / "bin-without-bwrap"
    shadow.mkdir()
    for tool in home.iterdir():
        if tool.name != "bwrap" and tool.is_file():
            (shadow / tool.name).symlink_to(tool)
    dirs = os.environ["PATH"].split(os.pathsep)
    return os.pathsep.join(str(shadow) if Path(d).resolve() == home else d for d in dirs)


def test_dlq_retry_completes_rollouts_dead_lettered_for_want_of_bubblewrap(
    tmp_path, monkeypatch, capsys
):
    workdir = tmp_path / "demo"
    repo = build_sample_repo(workdir / "sample-repo")
    with serve(demo_script_path()) as double:
        config = demo_config(workdir, double.url, [])
        ensure_tokenizer(repo, Path(config.filter.tokenizer))
        Registry(config.producer.registry, config.producer.mirrors).add(
            str(repo), "main", "sample-repo", backfill=len(SAMPLE_COMMITS)
        )
        bus = open_bus(config.bus)
        bus.create_topics(list(TOPICS), config.bus.partitions)
        watch(config, once=True)
        with monkeypatch.context() as patch:  # bubblewrap goes away under a running pipeline
            patch.setenv("PATH", path_without_bwrap(tmp_path))
            run_pipeline(config, bus)
        bus.close()
        lake = Lake(config.lake.root)
        failed = lake.counts()
        tasks = failed["tasks"]
        assert tasks >= 5 and failed["dlq"] == tasks and failed["rollouts.t1"] == 0
        [(stage, error_type, open_inputs)] = [
            (c.stage, c.error_type, c.inputs) for c in open_counts(lake)
        ]
        assert (stage, error_type, open_inputs) == ("rollout1", "SandboxError", tasks)

        config_file = workdir / "trajlake.yaml"
        write_config(config_file, config)
        assert main(["--config", str(config_file), "dlq", "retry", "--dry-run"]) == 0
        assert f"{tasks} dead letters to send back: {tasks} to rollout1" in capsys.readouterr().out
        assert lake.counts() == failed  # a dry run sends nothing

        assert main(["--config", str(config_file), "dlq", "retry"]) == 0
        done = lake.counts()
        assert {t: done[t] for t in FULL} == dict.fromkeys(FULL, tasks)
        assert done["samples"] == 2 * tasks
        assert done["dlq"] == tasks and done["dlq.resolved"] == tasks  # history kept, resolved
        assert open_counts(lake) == []

        capsys.readouterr()
        assert main(["--config", str(config_file), "dlq", "retry"]) == 0
        assert "0 dead letters to send back" in capsys.readouterr().out
        assert lake.counts() == done
