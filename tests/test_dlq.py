"""Dead-letter re-drive: rollouts that failed for want of bubblewrap complete once it is back.

The demo's pipeline runs with bubblewrap gone from PATH after the preflight would have passed
(it was uninstalled under a running pipeline): every rollout 1 becomes a dead letter. With
bubblewrap back, `trajlake dlq retry` (the CLI, in-process) sends them back to rollout1 and runs
the pipeline; the first retry's records are refused by the bus after their lake write, and the
next retry sends them again: every task then goes all the way, `dlq list` counts nothing open,
the dead letters stay in the lake as history, and a third retry adds no row. Real git, bubblewrap,
embedded bus and lake; the teacher is the scripted double over HTTP.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import write_config

from trajlake.bus import Bus, open_bus
from trajlake.cli import main
from trajlake.config import Config
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


def commits_emitted(workdir: Path, teacher_url: str, overrides: list[str]) -> tuple[Config, Bus]:
    """The demo's configuration and bus, its sample repository's commits emitted."""
    repo = build_sample_repo(workdir / "sample-repo")
    config = demo_config(workdir, teacher_url, overrides)
    ensure_tokenizer(repo, Path(config.filter.tokenizer))
    Registry(config.producer.registry, config.producer.mirrors).add(
        str(repo), "main", "sample-repo", backfill=len(SAMPLE_COMMITS)
    )
    bus = open_bus(config.bus)
    bus.create_topics(list(TOPICS), config.bus.partitions)
    watch(config, once=True)
    return config, bus


def test_dlq_retry_completes_rollouts_dead_lettered_for_want_of_bubblewrap(
    tmp_path, monkeypatch, capsys
):
    workdir = tmp_path / "demo"
    with serve(demo_script_path()) as double:
        config, bus = commits_emitted(workdir, double.url, ["runner.outage_patience_s=0"])
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
        assert (stage, error_type, open_inputs) == ("rollout1", "SandboxDown", tasks)

        config_file = workdir / "trajlake.yaml"
        write_config(config_file, config)
        assert main(["--config", str(config_file), "dlq", "retry", "--dry-run"]) == 0
        assert f"{tasks} dead letters to send back: {tasks} to rollout1" in capsys.readouterr().out
        assert lake.counts() == failed  # a dry run sends nothing

        # the bus refuses the retries after they are in the lake (too big for it, here)
        refusing = ["--set", "bus.claim_check=false", "--set", "bus.max_record_bytes=1024"]
        assert main(["--config", str(config_file), *refusing, "dlq", "retry"]) == 2
        assert "max_record_bytes" in capsys.readouterr().err
        assert lake.counts()["dlq.retry"] == tasks and lake.counts()["rollouts.t1"] == 0
        assert main(["--config", str(config_file), "dlq", "list"]) == 0
        assert f"{tasks} open ({tasks} of them sent back" in capsys.readouterr().err

        assert main(["--config", str(config_file), "dlq", "retry"]) == 0  # sent again
        assert f"{tasks} of them sent before" in capsys.readouterr().out
        done = lake.counts()
        assert {t: done[t] for t in FULL} == dict.fromkeys(FULL, tasks)
        assert done["samples"] == 2 * tasks
        assert done["dlq"] == tasks and done["dlq.resolved"] == tasks  # history kept, resolved
        assert open_counts(lake) == []

        capsys.readouterr()
        assert main(["--config", str(config_file), "dlq", "retry"]) == 0
        assert "0 dead letters to send back" in capsys.readouterr().out
        assert lake.counts() == done


def test_dlq_heal_turns_outage_rows_of_an_older_trajlake_into_retries(tmp_path, capsys):
    """A lake as trajlake wrote it before outages were retried: each task's rollout 1 a final
    TeacherError row ("failed N time(s)"), which the filter then labelled. Made here with the
    real stages: the rows go to the lake and the bus as rollout1 wrote them, and the pipeline
    runs on. `dlq heal` turns them into dead letters and takes them (and their samples) out;
    `dlq retry` then runs every task all the way."""
    from trajlake.config import load_config
    from trajlake.consumers.agent import AgentResult
    from trajlake.consumers.on_checkout import Ran
    from trajlake.consumers.rollout import Rollouts
    from trajlake.delivery import write_and_send

    workdir = tmp_path / "demo"
    with serve(demo_script_path()) as double:
        config, bus = commits_emitted(workdir, double.url, [])
        run_pipeline(config, bus, names=["function_sampler"])
        lake = Lake(config.lake.root)
        ctx = Rollouts.create(config)
        outage = f"the teacher at {double.url} failed 5 time(s) (4 retries): connection error"
        legacy = [
            ctx.record(
                task,
                "t1",
                1,
                task.request,
                Ran(AgentResult([], "TeacherError", outage), "", "bubblewrap", ""),
                task_id=task.event_id,
                self_eval="",
                duplicate=False,
            )
            for task in lake.read_events("tasks")
        ]
        producer = bus.producer()
        write_and_send(lake, producer, config.bus, "rollouts.t1", legacy, "legacy-rollout1")
        producer.close()
        run_pipeline(config, bus)  # the filter labels them; rollout1 skips what is done
        bus.close()
        tasks = len(legacy)
        hit = lake.counts()
        assert hit["rollouts.t1"] == tasks and hit["samples"] == tasks and hit["prs"] == 0

        config_file = workdir / "trajlake.yaml"
        write_config(config_file, config)
        assert main(["--config", str(config_file), "dlq", "heal", "--dry-run"]) == 0
        assert f"{tasks} inputs to dead-letter" in capsys.readouterr().out
        assert lake.counts() == hit
        assert main(["--config", str(config_file), "dlq", "heal"]) == 0
        healed = lake.counts()
        assert (healed["dlq"], healed["rollouts.t1"], healed["samples"]) == (tasks, 0, 0)
        assert main(["--config", str(config_file), "dlq", "heal"]) == 0  # nothing left
        assert "0 inputs to dead-letter" in capsys.readouterr().out

        assert main(["--config", str(config_file), "dlq", "retry"]) == 0
    done = lake.counts()
    assert {t: done[t] for t in FULL} == dict.fromkeys(FULL, tasks)
    assert done["samples"] == 2 * tasks and open_counts(lake) == []
    con = Lake(load_config(config_file).lake.root).connect(["rollouts.t1"])
    statuses = {r[0] for r in con.execute("SELECT exit_status FROM rollouts_t1").fetchall()}
    assert statuses == {"Submitted"}
