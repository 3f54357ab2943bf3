"""The lake on object storage, against a real S3-compatible server (moto) on loopback.

Writes go through pyarrow's S3 filesystem, reads through DuckDB over PyArrow (see
trajlake.lake.objects for why not httpfs): append, visibility only through manifests written
after their objects, the stage runner and `trajlake sql` on an s3:// root, and claim checks
whose object cannot be read: a storage error at once (a second moto server that refuses every
credential stands for a consumer whose storage refuses it).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from echo_stage import STAGE, commit_event, expected_id
from helpers import produce

from trajlake import envelope
from trajlake.bus import open_bus
from trajlake.cli import main
from trajlake.config import BusConfig, RunnerConfig
from trajlake.errors import LakeError
from trajlake.lake import Lake, claims
from trajlake.lake.claims import ClaimStorageError, relative_path
from trajlake.lake.mixtures import lake_files
from trajlake.lake.objects import MANIFESTS, ObjectLake, s3_filesystem
from trajlake.runner import StageRunner
from trajlake.schemas import TaskEvent, make_event_id

pytestmark = pytest.mark.integration

DAY = dt.date(2024, 5, 1)
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """http://127.0.0.1:PORT of a moto S3 server for this module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def refusing_endpoint() -> Iterator[str]:
    """http://127.0.0.1:PORT of a moto S3 server that checks credentials from the first request
    (INITIAL_NO_AUTH_ACTION_COUNT=0): it has none on file, so it refuses every one (403)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard AWS variables pointing at the local server (the only way to configure it)."""
    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    return env


@pytest.fixture
def root(s3_env: dict[str, str]) -> str:
    """s3://<a fresh bucket>/lake"""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    pafs.S3FileSystem(
        endpoint_override=s3_env["AWS_ENDPOINT_URL"].removeprefix("http://"),
        scheme="http",
        region="us-east-1",
        allow_bucket_creation=True,
    ).create_dir(bucket)
    return f"s3://{bucket}/lake"


def task(i: int, seconds: int = 0) -> TaskEvent:
    return TaskEvent(
        event_id=make_event_id("task", i),
        parent_ids=[make_event_id("commit", i)],
        created_at=T0 + dt.timedelta(seconds=seconds),
        stage="function_sampler",
        repo="github.com/acme/widgets",
        commit="c0ffee",
        function_file="src/widgets/core.py",
        function_name=f"method_{i}",
        line_start=10,
        line_end=20,
        change_type="error handling",
        request=f"The issue may be in method_{i}.",
    )


def keys(root: str) -> list[str]:
    """Every object key under the lake root."""
    store = ObjectLake.open(root)
    selector = pafs.FileSelector(store.base, recursive=True)
    infos = store.filesystem.get_file_info(selector)
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)


def count(root: str, table: str) -> int:
    con = Lake(root).connect()
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_writes_append_and_duckdb_reads_them(root: str) -> None:
    lake = Lake(root)
    assert count(root, "tasks") == 0  # a view with the right columns before any object
    first = lake.write("tasks", [task(0), task(1)], "sampler-p0-o000000000000", date=DAY)
    second = lake.write("tasks", [task(2)], "sampler-p0-o000000000002", date=DAY)
    assert all(uri.startswith(f"{root}/tasks/repo=") for uri in first + second)
    names = sorted(e.function_name for e in lake.read_events("tasks"))
    assert names == ["method_0", "method_1", "method_2"]
    con = lake.connect()
    rows = con.execute("SELECT function_name, created_at FROM tasks ORDER BY 1").fetchall()
    con.close()
    assert [r[0] for r in rows] == ["method_0", "method_1", "method_2"] and rows[0][1] == T0
    written = keys(root)
    assert len([k for k in written if k.endswith(".parquet")]) == 2
    assert len([k for k in written if f"/{MANIFESTS}/" in k]) == 2
    # what a mixture built from this lake records as read: the two visible objects
    assert [f.split("/")[0] for f in lake_files(root)] == ["tasks", "tasks"]


def test_rewriting_a_name_replaces_the_object_and_views_deduplicate(root: str) -> None:
    lake = Lake(root)
    lake.write("tasks", [task(0, seconds=5)], "same", date=DAY)
    lake.write("tasks", [task(0, seconds=5), task(1)], "same", date=DAY)  # a replay, one more
    lake.write("tasks", [task(0, seconds=1)], "other", date=DAY)  # re-processed elsewhere
    assert len([k for k in keys(root) if k.endswith(".parquet")]) == 2
    events = {e.function_name: e.created_at for e in lake.read_events("tasks")}
    assert events == {"method_0": T0 + dt.timedelta(seconds=1), "method_1": T0}


def test_an_object_without_its_manifest_is_invisible(root: str) -> None:
    lake = Lake(root)
    lake.write("tasks", [task(0)], "visible", date=DAY)
    store = ObjectLake.open(root)
    # A writer that died after the data PUT and before the manifest PUT left this behind.
    orphan = store.data_path("tasks", task(1).repo, DAY, "orphan")
    table = pa.Table.from_pylist([task(1).model_dump()], schema=TaskEvent.arrow_schema())
    pq.write_table(table, orphan, filesystem=store.filesystem)
    assert f"{orphan}" in keys(root)
    assert [e.function_name for e in lake.read_events("tasks")] == ["method_0"]
    assert count(root, "tasks") == 1
    # The re-run of that write publishes both, under the same names: now it counts, once.
    lake.write("tasks", [task(1)], "orphan", date=DAY)
    assert count(root, "tasks") == 2


class _Recording(pafs.FileSystemHandler):
    """The real S3 filesystem, recording the order objects are written in; it can refuse
    manifest writes, as a writer killed between the two PUTs (or a lost connection) would."""

    def __init__(self, inner: pafs.FileSystem, refuse_manifests: bool = False) -> None:
        self.inner = inner
        self.refuse_manifests = refuse_manifests
        self.written: list[str] = []

    def open_output_stream(self, path: str, metadata: dict | None) -> pa.NativeFile:
        if self.refuse_manifests and f"/{MANIFESTS}/" in path:
            raise OSError(f"connection reset while writing {path}")
        self.written.append(path)
        return self.inner.open_output_stream(path, metadata=metadata)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.inner.get_file_info(selector)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self.inner.open_input_file(path)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.inner.open_input_stream(path)

    def normalize_path(self, path: str) -> str:
        return self.inner.normalize_path(path)

    def get_type_name(self) -> str:
        return "recording-s3"

    def equals(self, other: object) -> bool:
        return self is other

    def create_dir(self, path: str, recursive: bool) -> None:
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, *args: object) -> None:
        raise NotImplementedError("the lake never deletes")

    delete_dir_contents = delete_root_dir_contents = delete_file = delete_dir
    move = copy_file = open_append_stream = delete_dir


def test_manifests_are_written_after_every_object_and_make_them_visible(root: str) -> None:
    lake = Lake(root)
    recorder = _Recording(s3_filesystem())
    lake.objects = ObjectLake.open(root, pafs.PyFileSystem(recorder))
    two_repos = [task(0), task(1).model_copy(update={"repo": "github.com/acme/gears"})]
    lake.write("tasks", two_repos, "sampler-p1-o000000000000", date=DAY)
    kinds = ["manifest" if f"/{MANIFESTS}/" in p else "data" for p in recorder.written]
    assert kinds == ["data", "data", "manifest", "manifest"]

    refusing = _Recording(s3_filesystem(), refuse_manifests=True)
    lake.objects = ObjectLake.open(root, pafs.PyFileSystem(refusing))
    with pytest.raises(LakeError, match="cannot write s3://.*_manifests.*AWS_ENDPOINT_URL"):
        lake.write("tasks", [task(2)], "sampler-p1-o000000000002", date=DAY)
    assert len(refusing.written) == 1  # the object went up, its manifest never did
    assert count(root, "tasks") == 2  # so it is not seen


def test_the_runner_and_trajlake_sql_on_an_s3_root(
    root: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    bus = open_bus(BusConfig(path=str(tmp_path / "bus.db")))
    bus.create_topics(["commits", "tasks", "dlq"], 2)
    commits = [commit_event(i) for i in range(30)]
    produce(bus, "commits", [c.encode() for c in commits], [c.partition_key() for c in commits])
    runner = StageRunner(STAGE, bus, Lake(root), RunnerConfig(batch_size=7, poll_timeout_s=0.1))
    stats = runner.run(idle_timeout_s=0.5)
    bus.close()
    assert stats.produced == 30

    command = [sys.executable, "-m", "trajlake.cli", "--set", f"lake.root={root}"]
    query = "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM tasks"
    out = subprocess.run(
        [*command, "sql", query, "--format", "csv"],
        env={**os.environ, **s3_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["n,ids", "30,30"]
    ids = {e.event_id for e in Lake(root).read_events("tasks")}
    assert ids == {expected_id(c.event_id) for c in commits}
    [one] = Lake(root).read_events("tasks", "list_contains(parent_ids, ?)", [commits[7].event_id])
    assert one.event_id == expected_id(commits[7].event_id)  # how the runner finds prior work


def claimed_task(lake: Lake) -> tuple[bytes, str]:
    """A task too big for the bus, written as a stage writes it: its bus bytes (a claim check
    on its object) and the object's URI."""
    big = task(3).model_copy(update={"request": "Widget.method_3 " * 200})
    [uri] = lake.write("tasks", [big], "sampler-p0-o000000000003", date=DAY)
    data = envelope.encode(big, relative_path(lake, uri), 1_000)
    assert envelope.is_claim_check(data) and envelope.decode("tasks", data, lake) == big
    return data, uri


def test_a_claim_check_on_storage_that_refuses_the_credentials_fails_at_once(
    root: str, refusing_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, uri = claimed_task(Lake(root))
    # The consumer's storage refuses it (here: a server that knows no credentials): that is
    # no row "not there yet" to wait for, but an error naming the object and the cause.
    monkeypatch.setenv("AWS_ENDPOINT_URL", refusing_endpoint)
    monkeypatch.setattr(claims, "WAIT_FOR_ROW_S", 0.0)  # only the error's kind is under test
    refused = f"cannot read {re.escape(uri)}, which holds the request of record .*ACCESS_DENIED"
    with pytest.raises(ClaimStorageError, match=refused):
        envelope.decode("tasks", data, Lake(root))


def test_a_claimed_object_gone_under_its_manifest_is_a_storage_error(root: str) -> None:
    lake = Lake(root)
    data, uri = claimed_task(lake)
    s3_filesystem().delete_file(uri.removeprefix("s3://"))  # its manifest still names it
    with pytest.raises(
        ClaimStorageError, match=f"cannot read the rows of record .* in {root}/tasks"
    ):
        envelope.decode("tasks", data, lake)


def test_compaction_of_an_s3_lake_says_it_is_not_supported(root: str, capsys) -> None:
    assert main(["--set", f"lake.root={root}", "lake", "compact"]) == 2
    assert "not supported yet" in capsys.readouterr().err


def test_a_bad_endpoint_or_root_says_what_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LakeError, match="names no bucket"):
        Lake("s3://")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "minio:9000")
    with pytest.raises(LakeError, match="http\\(s\\)://host:port"):
        Lake("s3://bucket/lake")
