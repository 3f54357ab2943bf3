"""The repository registry and the commits producer, on real git repositories in tmp_path."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import read_topic

from trajlake.bus import open_bus
from trajlake.cli import main
from trajlake.config import BusConfig, Config, LakeConfig, ProducerConfig
from trajlake.consumers import function_sampler
from trajlake.lake import Lake
from trajlake.producers.commits import poll_new_commits, watch
from trajlake.repos import Registry, RepoError, local_git_dir
from trajlake.schemas import CommitEvent, make_event_id

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def sh(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def new_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    sh(path, "init", "-q", "-b", "main")
    return path


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    sh(repo, "add", "-A")
    sh(repo, "commit", "-q", "-m", message)
    return sh(repo, "rev-parse", "HEAD")


def history(repo: Path, n: int) -> list[str]:
    return [commit(repo, {f"m{i}.py": f"x = {i}\n"}, f"change {i}") for i in range(n)]


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under root (work tree and .git): mtime and content hash."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "data" / "repos.db", tmp_path / "data" / "mirrors")


def make_config(tmp_path: Path, bus_config: BusConfig | None = None) -> Config:
    """Everything under tmp_path/data; the embedded bus unless a backend is given."""
    data = tmp_path / "data"
    return Config(
        bus=bus_config or BusConfig(path=str(data / "bus.db")),
        lake=LakeConfig(root=str(data / "lake")),
        producer=ProducerConfig(registry=str(data / "repos.db"), mirrors=str(data / "mirrors")),
    )


# -- registry ------------------------------------------------------------------------------


@pytest.mark.unit
def test_add_stores_absolute_paths_and_unique_readable_names(tmp_path, registry, monkeypatch):
    first = new_repo(tmp_path / "a" / "proj")
    second = new_repo(tmp_path / "b" / "proj")
    commit(first, {"x.py": "x = 1\n"}, "one")
    commit(second, {"x.py": "x = 1\n"}, "one")
    sh(second, "branch", "dev")
    monkeypatch.chdir(tmp_path / "a")

    a = registry.add("proj")
    b = registry.add(str(second), branch="dev", backfill=4)
    c = registry.add(str(second), name="mine")

    assert (a.name, a.url, a.branch, a.backfill) == ("proj", str(first), "main", 1)
    assert (b.name, b.url, b.branch, b.backfill) == ("proj-2", str(second), "dev", 4)
    assert c.name == "mine"
    assert registry.list() == [c, a, b]  # by name
    assert registry.get("proj-2") == b and all(r.last_emitted is None for r in registry.list())


@pytest.mark.unit
def test_add_refuses_what_it_cannot_follow_and_stores_nothing(tmp_path, registry):
    repo = new_repo(tmp_path / "proj")
    commit(repo, {"pkg/x.py": "x = 1\n"}, "one")
    plain = tmp_path / "plain"
    plain.mkdir()
    registry.add(str(repo))
    cases = [
        ((str(plain),), "not a git repository"),
        ((str(tmp_path / "missing"),), "not a directory"),
        ((str(repo / "pkg"),), f"inside the git repository {repo}"),
        ((str(repo), "dev"), r"branch 'dev' does not exist .* its branches: main"),
        ((str(repo),), "already registered as 'proj'"),
        ((str(repo), "main", "bad name"), "not allowed"),
        ((str(repo), "main", None, 0), "at least 1"),
    ]
    for args, message in cases:
        with pytest.raises(RepoError, match=message):
            registry.add(*args)
    with pytest.raises(RepoError, match="no repository named"):
        registry.get("nope")
    assert [r.name for r in registry.list()] == ["proj"]


# -- polling -------------------------------------------------------------------------------


@pytest.mark.integration
def test_poll_backfills_then_returns_new_commits_oldest_first(tmp_path, registry):
    repo = new_repo(tmp_path / "proj")
    shas = history(repo, 5)
    registered = registry.add(str(repo), backfill=3)

    events = poll_new_commits(registered, repo, config_hash="abc")

    assert [e.commit for e in events] == shas[2:]
    last = events[-1]
    assert isinstance(last, CommitEvent)
    assert last.event_id == make_event_id(str(repo), shas[4])
    assert (last.repo, last.repo_url, last.branch, last.stage) == (
        "proj",
        str(repo),
        "main",
        "commits",
    )
    assert (last.parents, last.author, last.message) == (
        [shas[3]],
        "Ada <ada@example.com>",
        "change 4",
    )
    assert last.changed_files == ["m4.py"] and last.config_hash == "abc"
    assert last.committed_at is not None and last.committed_at.tzinfo is not None

    registry.mark_emitted("proj", last.commit)
    assert poll_new_commits(registry.get("proj"), repo) == []
    sh(repo, "checkout", "-q", "-b", "side")
    side = commit(repo, {"side.py": "s = 1\n"}, "side work")
    sh(repo, "checkout", "-q", "main")
    ahead = commit(repo, {"m0.py": "x = 100\n"}, "main work")
    sh(repo, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    merge = sh(repo, "rev-parse", "HEAD")

    events = poll_new_commits(registry.get("proj"), repo)

    assert {e.commit for e in events} == {side, ahead, merge} and events[-1].commit == merge
    assert events[-1].changed_files == ["side.py"]  # against the first parent
    position = {e.commit: i for i, e in enumerate(events)}
    assert all(position.get(p, -1) < position[e.commit] for e in events for p in e.parents)


@pytest.mark.integration
def test_restart_emits_nothing_twice_and_a_lost_registry_update_is_deduplicated(
    tmp_path, bus_config
):
    config = make_config(tmp_path, bus_config)
    repo = new_repo(tmp_path / "proj")
    shas = history(repo, 3)
    registry = Registry(config.producer.registry, config.producer.mirrors)
    registry.add(str(repo), backfill=2)
    bus = open_bus(config.bus)
    bus.create_topics(["commits"], 2)
    lake = Lake(config.lake.root)

    def lake_ids() -> list[str]:
        return sorted(
            r[0] for r in lake.connect().execute("SELECT event_id FROM commits").fetchall()
        )

    def topic_ids() -> list[str]:
        return sorted(CommitEvent.decode(m.value).event_id for m in read_topic(bus, "commits"))

    try:
        watch(config, once=True)
        watch(config, once=True)  # a clean restart: nothing new, nothing again
        expected = sorted(make_event_id(str(repo), sha) for sha in shas[1:])
        assert lake_ids() == expected and topic_ids() == expected

        new = commit(repo, {"n.py": "n = 1\n"}, "new")
        watch(config, once=True)
        new_id = make_event_id(str(repo), new)
        expected = sorted([*expected, new_id])
        assert lake_ids() == expected

        registry.mark_emitted("proj", shas[2])  # as if it crashed before recording `new`
        watch(config, once=True)
        assert lake_ids() == expected  # the same id again: one row in the lake
        assert topic_ids() == sorted([*expected, new_id])  # at least once on the bus
        assert registry.get("proj").last_emitted == new
    finally:
        bus.close()


@pytest.mark.integration
def test_url_repository_is_mirrored_and_fetched(tmp_path, registry):
    config = make_config(tmp_path)
    origin = new_repo(tmp_path / "origin")
    first = commit(origin, {"a.py": "a = 1\n"}, "one")
    url = f"file://{origin}"
    registry.add(url)
    watch(config, once=True)
    second = commit(origin, {"a.py": "a = 2\n"}, "two")
    mirror = local_git_dir(url, config.producer.mirrors)
    assert mirror.is_relative_to(tmp_path / "data" / "mirrors") and mirror != origin
    assert sh(mirror, "rev-parse", "refs/heads/main") == first  # not fetched yet
    watch(config, once=True)  # fetches, then emits the new commit

    bus = open_bus(config.bus)
    events = [CommitEvent.decode(m.value) for m in read_topic(bus, "commits")]
    bus.close()
    assert [e.commit for e in events] == [first, second]
    assert {e.repo_url for e in events} == {url} and {e.repo for e in events} == {"origin"}
    third = commit(origin, {"a.py": "a = 3\n"}, "three")
    assert local_git_dir(url, config.producer.mirrors, commit=third) == mirror  # fetched on demand
    assert sh(mirror, "cat-file", "-t", third) == "commit"
    with pytest.raises(RepoError, match="not in"):
        local_git_dir(url, config.producer.mirrors, commit="1" * 40)
    assert local_git_dir(str(origin), config.producer.mirrors) == origin  # a path: as is


@pytest.mark.integration
def test_registered_repository_is_never_modified(tmp_path):
    config = make_config(tmp_path)
    repo = new_repo(tmp_path / "proj")
    history(repo, 2)
    commit(repo, {"pkg/core.py": "def f(x):\n    return x + 1\n"}, "code")
    (repo / "pkg" / "core.py").write_text("def f(x):\n    return x - 1\n")  # a dirty work tree
    (repo / "untracked.py").write_text("u = 1\n")
    Registry(config.producer.registry, config.producer.mirrors).add(str(repo), backfill=3)
    before = snapshot(repo)

    watch(config, once=True)
    events = Lake(config.lake.root).read_events("commits")
    tasks = [t for e in events for t in function_sampler.process(config, e)]

    assert [t.function_name for t in tasks] == ["f"]
    assert snapshot(repo) == before


# -- the command line ----------------------------------------------------------------------


@pytest.mark.integration
def test_cli_repo_add_list_and_watch_once(tmp_path, monkeypatch, capsys):
    repo = new_repo(tmp_path / "proj")
    shas = history(repo, 3)
    monkeypatch.chdir(tmp_path)

    assert main(["repo", "add", str(repo), "--backfill", "2"]) == 0
    assert main(["watch", "--once"]) == 0
    assert main(["repo", "list"]) == 0
    out, err = capsys.readouterr()
    assert "registered proj" in out and "proj: 2 new commit(s)" in err
    listed = out.splitlines()[-1].split()
    assert listed == ["proj", "main", shas[-1][:12], "auto", str(repo)]  # auto: its environment
    assert main(["repo", "add", str(tmp_path)]) == 2
    assert "not a git repository" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # watch put the handler back


@pytest.mark.integration
def test_watch_stops_cleanly_on_sigterm(tmp_path, monkeypatch):
    repo = new_repo(tmp_path / "proj")
    head = history(repo, 1)[0]
    monkeypatch.chdir(tmp_path)  # the default config: ./trajlake-data
    assert main(["repo", "add", str(repo)]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "trajlake.cli", "watch", "--interval", "60"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while (
            Registry("trajlake-data/repos.db", "trajlake-data/mirrors").get("proj").last_emitted
            != head
        ):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "proj: 1 new commit(s)" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
