"""Rollouts of 5 MB and 50 MB go through every stage on both buses (claim checks, not failures).

Kafka's brokers take ~1 MB per record by default and kafka-python refuses bigger ones before
sending. A rollout whose reasoning is 5 or 50 MB goes through rollout 1 → PR writer →
rollout 2 → verifier → filter: on the bus as a claim check on its lake row, in the lake whole.
Real git, bubblewrap, lake and bus (the session's Tansu broker for kafka); the teacher is the
scripted double, whose demo script gets two extra sessions that think at great length.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import confluent_kafka
import pytest
import yaml
from helpers import bus_overrides, git_repo, read_topic

from trajlake import envelope
from trajlake.bus import open_bus
from trajlake.demo import demo_config
from trajlake.lake import Lake
from trajlake.pipeline import run_pipeline
from trajlake.producers.commits import watch
from trajlake.repos import Registry
from trajlake.schemas import TOPICS
from trajlake.teacher.double import demo_script_path, serve
from trajlake.teacher.script import Script

pytestmark = pytest.mark.integration

MB = 1_000_000
SIZES = {"five_mb_total": 5 * MB, "fifty_mb_total": 50 * MB}  # function -> reasoning size
SOURCE = "".join(
    f"def {name}(values):\n    total = 0\n    for value in values:\n        total += value\n"
    "    return total\n\n\n"
    for name in SIZES
)


def long_thought(size: int) -> str:
    """Varied prose of `size` characters (not one repeated byte: zstd must work for it)."""
    words = [
        f"step{i % 9973} checks value {i * 7919 % 100003} against bound {i % 251};"
        for i in range(size // 40 + 1)
    ]
    return " ".join(words)[:size]


def thinking_script() -> Script:
    """The demo script, with a session per big function whose last turn thinks `size` chars."""
    data = yaml.safe_load(demo_script_path().read_text())
    agent_t1 = next(s for s in data["sessions"] if s["name"] == "agent_t1")
    extra = []
    for name, size in SIZES.items():
        turns = [dict(turn) for turn in agent_t1["turns"]]
        turns[-1]["reasoning"] = long_thought(size)
        match = agent_t1["match"].replace("(?P<function>[^`]+)", f"(?P<function>{name})")
        assert match != agent_t1["match"], "agent_t1 names its function otherwise now"
        extra.append({**agent_t1, "name": f"think_{name}", "match": match, "turns": turns})
    position = data["sessions"].index(agent_t1)
    data["sessions"][position:position] = extra
    return Script.model_validate(data)


def test_rollouts_of_5_and_50_mb_go_through_every_stage(bus_config, tmp_path):
    repo, _ = git_repo(tmp_path / "repo", {"calc/ops.py": SOURCE})
    with serve(thinking_script()) as double:
        overrides = [*bus_overrides(bus_config), "sampler.mode=all", "filter.tokenizer="]
        config = demo_config(tmp_path / "work", double.url, overrides)
        Registry(config.producer.registry, config.producer.mirrors).add(str(repo), "main", "calc")
        bus = open_bus(config.bus)
        try:
            bus.create_topics(list(TOPICS), 2)
            watch(config, once=True)
            run_pipeline(config, bus)  # a stage that stopped would raise PipelineError here
            records = read_topic(bus, "rollouts.t1")
        finally:
            bus.close()

    lake = Lake(config.lake.root)
    counts = lake.counts()
    assert counts["dlq"] == 0
    assert {t: counts[t] for t in ("tasks", "rollouts.t1", "prs", "rollouts.t2", "verdicts")} == {
        "tasks": 2,
        "rollouts.t1": 2,
        "prs": 2,
        "rollouts.t2": 2,
        "verdicts": 2,
    }
    assert counts["samples"] == 4
    con = lake.connect()
    sizes = dict(
        con.execute(
            "SELECT t.function_name, length(r.messages_json) FROM rollouts_t1 r "
            "JOIN tasks t ON t.event_id = r.task_id"
        ).fetchall()
    )
    for name, size in SIZES.items():
        assert sizes[name] > size  # the whole trajectory is in the lake
    assert all(len(r.value) <= config.bus.max_record_bytes for r in records)
    assert all(envelope.is_claim_check(r.value) for r in records)
    labels = con.execute("SELECT label FROM verdicts").fetchall()
    assert sorted(labels) == [("soft",), ("soft",)]  # the a-m rule of the demo script

    if bus_config.kind == "kafka":
        topic = f"{bus_config.namespace}.rollouts.t1"
        printed = kcat_json(bus_config.bootstrap_servers, topic, tmp_path)
        assert {r["event_id"] for r in printed} == {
            json.loads(r.value)["event_id"] for r in records
        }
        assert all(r["claim_check"]["file"].startswith("rollouts_t1/") for r in printed)


def kcat_json(bootstrap: str, topic: str, workdir: Path) -> list[dict]:
    """Every record of `topic` as kcat prints it, parsed as JSON (one per line).

    Debian's kcat links librdkafka 2.0.2, which misreads the ApiVersions v3 reply of the Tansu
    test broker (Apache Kafka is fine); the same kcat runs here on the newer librdkafka that
    the confluent-kafka wheel ships.
    """
    kcat = shutil.which("kcat") or pytest.fail("kcat is missing: apt-get install -y kcat")
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    library = next(libs.glob("librdkafka*.so*"), None) or pytest.fail(f"no librdkafka in {libs}")
    (workdir / "librdkafka.so.1").symlink_to(library)
    out = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%s\\n"],
        env={**os.environ, "LD_LIBRARY_PATH": str(workdir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]
