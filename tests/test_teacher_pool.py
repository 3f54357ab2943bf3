"""Teachers behind several endpoints: the pool's choices, and rollouts that outlive an endpoint.

The integration tests use the real client against real teacher doubles over HTTP; one double
is a separate process that is killed with SIGKILL while rollouts run.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from scale_helpers import make_repo, make_tasks, quick_script, start_double, stop

from trajlake.bus import open_bus
from trajlake.bus.tansu import free_port
from trajlake.config import TeacherConfig, load_config
from trajlake.consumers import scaffold
from trajlake.consumers.rollout import make_rollout1
from trajlake.lake import Lake
from trajlake.runner import StageRunner
from trajlake.teacher import Teacher, teacher_id
from trajlake.teacher.client import shared_teacher
from trajlake.teacher.double import serve
from trajlake.teacher.pool import EndpointPool

A, B, C = "http://a/v1", "http://b/v1", "http://c/v1"


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def picks(pool: EndpointPool, n: int) -> list[str]:
    chosen = []
    for _ in range(n):
        chosen.append(pool.acquire())
        pool.release(chosen[-1], ok=True)
    return chosen


def answered(teacher: Teacher, url: str) -> int:
    usage = teacher.usage.by_endpoint().get(url)
    return usage.calls if usage else 0


@pytest.mark.unit
def test_round_robin_takes_each_in_turn() -> None:
    pool = EndpointPool([A, B, C], "round_robin")
    assert picks(pool, 7) == [A, B, C, A, B, C, A]


@pytest.mark.unit
def test_least_loaded_picks_the_fewest_in_flight_and_rotates_ties() -> None:
    pool = EndpointPool([A, B, C], "least_loaded")
    held = [pool.acquire(), pool.acquire()]  # A and B busy
    assert held == [A, B] and pool.acquire() == C
    assert pool.acquire() == A  # all at 1: the rotation goes on from C
    pool.release(B, ok=True)
    assert pool.acquire() == B  # now the only one at 1 below the others
    assert picks(EndpointPool([A, B], "least_loaded"), 4) == [A, B, A, B]


@pytest.mark.unit
def test_a_retry_avoids_endpoints_that_failed_this_call() -> None:
    pool = EndpointPool([A, B, C], "least_loaded")
    first = pool.acquire()
    pool.release(first, ok=False)
    assert pool.acquire(avoid={A}) == B
    assert pool.others_up({A, B}) and not pool.others_up({A, B, C})


@pytest.mark.unit
def test_repeated_failures_mark_an_endpoint_down_until_its_time_is_up() -> None:
    clock = Clock()
    pool = EndpointPool([A, B], "round_robin", down_after=2, down_for_s=30, clock=clock)
    for _ in range(2):
        pool.release(pool.acquire(avoid={B}), ok=False)
    assert pool.down() == [A]
    assert picks(pool, 3) == [B, B, B]
    clock.now += 31
    assert pool.down() == [] and picks(pool, 2) == [A, B]  # tried again, and it answered
    pool.release(pool.acquire(avoid={B}), ok=False)
    assert pool.down() == []  # its success cleared the count: one failure is not two in a row


@pytest.mark.unit
def test_one_success_clears_the_count_and_all_down_tries_the_first_back() -> None:
    clock = Clock()
    pool = EndpointPool([A, B], "least_loaded", down_after=2, down_for_s=10, clock=clock)
    pool.release(pool.acquire(avoid={B}), ok=False)
    pool.release(pool.acquire(avoid={B}), ok=True)
    pool.release(pool.acquire(avoid={B}), ok=False)
    assert pool.down() == []  # not two in a row
    pool.release(pool.acquire(avoid={B}), ok=False)
    clock.now += 5
    pool.release(pool.acquire(avoid={A}), ok=False)
    pool.release(pool.acquire(avoid={A}), ok=False)
    assert pool.down() == [A, B] and pool.acquire() == A  # A's time is up first


@pytest.mark.unit
def test_endpoints_come_from_base_url_and_base_urls_and_leave_the_teacher_id_alone() -> None:
    one = TeacherConfig(base_url=A)
    config = load_config(None, [f"teacher.base_url={A}", f"teacher.base_urls={B}, {C},{A}"])
    assert config.teacher.endpoints() == [A, B, C]
    listed = load_config(None, [f"teacher.base_urls=[{B}, {C}]"]).teacher.base_urls
    assert listed == (B, C)
    pooled = one.model_copy(update={"base_urls": (B,), "pool_strategy": "round_robin"})
    assert teacher_id(pooled, "s") == teacher_id(one, "s")
    assert hash(pooled)  # shared_teacher caches by config


@pytest.mark.teacher
def test_a_dead_endpoint_is_retried_elsewhere_then_left_alone(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with serve(quick_script(tmp_path / "script.yaml")) as double:
        config = TeacherConfig(base_url=dead, base_urls=(double.url,), max_retries=1, down_after=2)
        with Teacher(config, backoff_base_s=5) as teacher:  # a backoff would stall the test
            for _ in range(6):
                reply = teacher.chat([{"role": "user", "content": "aligned with the request?"}])
                assert reply.content == "yes"
            usage = teacher.usage.by_endpoint()
            assert (usage[dead].calls, usage[dead].failures) == (0, 2)  # then it was down
            assert usage[double.url].calls == 6 and teacher.usage.retries == 2
            assert teacher.pool.down() == [dead]


@pytest.mark.teacher
@pytest.mark.integration
def test_rollouts_finish_when_one_of_two_teachers_goes_down(tmp_path: Path) -> None:
    tasks = 8
    repo, commit = make_repo(tmp_path / "repo", tasks)
    script = quick_script(tmp_path / "script.yaml")
    doomed, doomed_url = start_double(script, latency_s=0.3)
    survivor, survivor_url = start_double(script, latency_s=0.3)
    try:
        config = load_config(
            None,
            [
                f"lake.root={tmp_path / 'lake'}",
                f"bus.path={tmp_path / 'bus.db'}",
                f"agent.trajectories={tmp_path / 'traj'}",
                f"teacher.base_url={doomed_url}",
                f"teacher.base_urls={survivor_url}",
                "teacher.max_retries=3",
                "teacher.down_after=2",
                "runner.concurrency=4",
            ],
        )
        bus = open_bus(config.bus)
        bus.create_topics(["tasks", "replay", "rollouts.t1", "dlq"], 2)
        producer = bus.producer()
        for task in make_tasks(repo, commit, tasks):
            producer.send("tasks", task.encode(), task.partition_key())
        producer.close()
        teacher = shared_teacher(config.teacher, scaffold.scaffold_id())
        runner = StageRunner(make_rollout1(config), bus, Lake(config.lake.root), config.runner)
        thread = threading.Thread(target=runner.run, kwargs={"idle_timeout_s": 1.0})
        thread.start()
        deadline = time.monotonic() + 60
        while min(answered(teacher, doomed_url), answered(teacher, survivor_url)) < 2:
            assert time.monotonic() < deadline and thread.is_alive(), "no teacher calls"
            time.sleep(0.05)  # until both endpoints have answered: the kill lands mid-run
        doomed.send_signal(signal.SIGKILL)
        answered_before = answered(teacher, survivor_url)
        thread.join(timeout=120)
        assert not thread.is_alive()
        bus.close()
    finally:
        stop(doomed)
        stop(survivor)

    rows = (
        Lake(config.lake.root)
        .connect()
        .execute("SELECT exit_status, self_eval, error FROM rollouts_t1")
        .fetchall()
    )
    assert len(rows) == tasks and set(rows) == {("Submitted", "yes", "")}, rows
    assert Lake(config.lake.root).counts()["dlq"] == 0
    usage = teacher.usage.by_endpoint()
    assert usage[doomed_url].calls >= 2 and usage[doomed_url].failures >= 1
    assert usage[survivor_url].calls > answered_before  # it took over the rest
    assert teacher.usage.total().failures == 0  # no call gave up
    assert teacher.pool.down() == [doomed_url]
