"""The rollout sandbox: real bubblewrap, real git, real processes, on a repository built here.

bwrap is part of the test setup (CI installs it): missing, these tests fail with the install hint.
The local kind serves as the control where a check must show that isolation, not the command,
made something fail.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from trajlake.config import SandboxConfig
from trajlake.errors import SandboxError
from trajlake.sandbox import Sandbox, open_sandbox

pytestmark = pytest.mark.sandbox

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}
OLD_CODE = "def f():\n    return 1\n"
NEW_CODE = "def f():\n    return 2\n"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        env=os.environ | GIT_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A work tree with two commits: the first has OLD_CODE, a text file and a binary file."""
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "--quiet", "--initial-branch=main")
    (src / "pkg").mkdir()
    (src / "pkg" / "code.py").write_text(OLD_CODE)
    (src / "notes.txt").write_text("to be deleted\n")
    (src / "data.bin").write_bytes(bytes(range(256)))
    git(src, "add", "-A")
    git(src, "commit", "--quiet", "-m", "first")
    (src / "pkg" / "code.py").write_text(NEW_CODE)
    git(src, "commit", "--quiet", "-am", "second")
    return src


@pytest.fixture
def bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        pytest.fail("bubblewrap is missing: `apt-get install -y bubblewrap` (CI installs it)")
    return path


@pytest.fixture
def make_sandbox(repo: Path, bwrap: str) -> Iterator[Callable[..., Sandbox]]:
    """open_sandbox on `repo` at its first commit; `kind` and config fields by keyword."""
    opened: list[Sandbox] = []

    def make(kind: str = "bubblewrap", commit: str = "HEAD~1", **fields: object) -> Sandbox:
        config = SandboxConfig(kind=kind, allow_unsafe_local=True, **fields)
        box = open_sandbox(config, repo, commit)
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


def tree_digest(root: Path) -> str:
    """A hash of every path, mode and content under `root` (symlinks by target)."""
    digest = hashlib.sha256()
    for directory, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted([*dirs, *files]):
            path = Path(directory, name)
            info = path.lstat()
            digest.update(f"{path.relative_to(root)}\0{info.st_mode}\0".encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def processes_with(marker: str) -> list[str]:
    """Command lines of the host's processes that contain `marker`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended meanwhile
        if marker in text:
            found.append(text)
    return found


def wait_until_gone(marker: str, within_s: float = 10) -> list[str]:
    deadline = time.monotonic() + within_s
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_checkout_is_at_the_commit_and_shows_no_later_history(make_sandbox):
    box = make_sandbox()
    assert (box.workdir / "pkg" / "code.py").read_text() == OLD_CODE
    result = box.run("cat pkg/code.py && git log --all --format=%s && git status --short")
    assert result.returncode == 0, result.output
    assert result.output == OLD_CODE + "first\n"


def test_a_bare_mirror_works_as_the_source(repo: Path, tmp_path: Path, bwrap: str):
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "clone", "--quiet", "--mirror", str(repo), str(mirror))
    with open_sandbox(SandboxConfig(), mirror, "HEAD~1") as box:
        assert box.workdir.name == "mirror"
        assert box.run("cat pkg/code.py").output == OLD_CODE
        box.run("echo more >> pkg/code.py")
        assert "+more" in box.diff()


def test_diff_holds_every_change_and_applies_to_a_fresh_checkout(make_sandbox):
    box = make_sandbox()
    edits = (
        "sed -i s/1/3/ pkg/code.py && mkdir -p new && echo 'print(1)' > new/tool.py"
        " && rm notes.txt && printf '\\000\\377binary' > data.bin && chmod +x pkg/code.py"
    )
    assert box.run(edits).returncode == 0
    patch = box.diff()
    assert "+    return 3" in patch and "-    return 1" in patch
    assert "new file mode 100644" in patch and "+print(1)" in patch
    assert "deleted file mode 100644" in patch and "-to be deleted" in patch
    assert "GIT binary patch" in patch
    assert "new mode 100755" in patch

    fresh = make_sandbox()
    (fresh.workdir / "agent.patch").write_text(patch)
    applied = fresh.run("git apply agent.patch && rm agent.patch")
    assert applied.returncode == 0, applied.output
    assert fresh.diff() == patch


def test_diff_leaves_out_caches_but_keeps_other_new_files(make_sandbox):
    box = make_sandbox()
    box.run("mkdir -p pkg/__pycache__ && touch pkg/__pycache__/code.cpython-311.pyc notes.log")
    patch = box.diff()
    assert "__pycache__" not in patch
    assert "b/notes.log" in patch


def test_diff_ignores_the_agents_git_config_and_commits(make_sandbox, tmp_path: Path):
    box = make_sandbox()
    pwned = tmp_path / f"pwned-{uuid.uuid4().hex}"
    result = box.run(
        f"git config core.fsmonitor 'touch {pwned}' && echo changed > notes.txt"
        " && git commit --quiet -am 'agent commit'"
    )
    assert result.returncode == 0, result.output
    patch = box.diff()
    assert not pwned.exists(), "diff() ran a command from the agent's .git/config on the host"
    assert "+changed" in patch  # the agent's commit does not hide its change


def test_writes_outside_the_checkout_fail(make_sandbox, repo: Path):
    box = make_sandbox()
    name = f"trajlake-test-{uuid.uuid4().hex}"
    targets = [Path("/etc") / name, Path.home() / name, repo / name, repo / ".git" / name]
    for target in targets:
        result = box.run(f"touch {target}")
        assert result.returncode != 0, f"{target} was writable"
        assert not target.exists()
    remount = box.run(f"mount -o remount,rw / && touch /etc/{name}")
    assert remount.returncode != 0 and not (Path("/etc") / name).exists()
    inside = box.run("echo hello > inside.txt && echo note > /tmp/note && cat /tmp/note")
    assert inside.returncode == 0 and inside.output == "note\n"
    assert (box.workdir / "inside.txt").read_text() == "hello\n"
    assert box.run("cat /tmp/note").output == "note\n"  # /tmp lasts as long as the sandbox


@pytest.fixture
def loopback_port() -> Iterator[int]:
    """A TCP server on 127.0.0.1 in this (host) process that accepts connections."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_the_network_is_off(make_sandbox, loopback_port: int):
    connect = (
        'python3 -c "import socket; '
        f"socket.create_connection(('127.0.0.1', {loopback_port}), timeout=5); print('connected')\""
    )
    control = make_sandbox("local").run(connect)
    assert control.output == "connected\n", control.output
    result = make_sandbox().run(connect)
    assert result.returncode != 0 and "connected" not in result.output
    assert "Connection refused" in result.output


@pytest.mark.parametrize("kind", ["bubblewrap", "local"])
def test_secrets_in_the_environment_stay_out(make_sandbox, monkeypatch, kind: str):
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    result = make_sandbox(kind).run("env")
    assert result.returncode == 0
    assert "PATH=" in result.output
    assert secret not in result.output and "OPENAI_API_KEY" not in result.output


@pytest.mark.parametrize("kind", ["bubblewrap", "local"])
def test_a_command_past_its_time_limit_is_killed_with_its_children(make_sandbox, kind: str):
    marker = f"{uuid.uuid4().int % 10**6}.25"  # a sleep length that names these processes
    result = make_sandbox(kind).run(f"(sleep {marker} &) ; sleep {marker}", timeout_s=1)
    assert result.timed_out and result.returncode == -9
    assert 1 <= result.duration_s < 10
    assert wait_until_gone(marker) == []


@pytest.mark.parametrize("kind", ["bubblewrap", "local"])
def test_background_processes_end_with_their_command(make_sandbox, kind: str):
    marker = f"{uuid.uuid4().int % 10**6}.75"
    result = make_sandbox(kind).run(f"sleep {marker} & echo started", timeout_s=30)
    assert result.output == "started\n" and not result.timed_out
    assert wait_until_gone(marker) == []


def test_a_memory_hog_is_stopped(make_sandbox):
    box = make_sandbox(memory_mb=256)
    allocate = "python3 -c \"b = bytearray({} * 1024 * 1024); b[-1] = 1; print('allocated')\""
    assert box.run(allocate.format(32)).output == "allocated\n"
    hog = box.run(allocate.format(512))
    assert hog.returncode != 0 and "allocated" not in hog.output
    assert "MemoryError" in hog.output


def test_a_cpu_hog_is_stopped(make_sandbox):
    result = make_sandbox(cpu_time_s=1).run("python3 -c 'while True: pass'", timeout_s=30)
    assert not result.timed_out
    assert result.returncode == 128 + 24  # SIGXCPU


def test_long_output_is_cut_in_the_middle(make_sandbox):
    box = make_sandbox(max_output_bytes=10_000)
    result = box.run("echo first; head -c 5000000 /dev/zero | tr '\\0' a; echo; echo last")
    assert result.returncode == 0
    assert len(result.output) < 20_000
    assert result.output.startswith("first\n") and result.output.endswith("last\n")
    assert "bytes of output cut" in result.output


def test_the_source_repository_is_never_modified(make_sandbox, repo: Path):
    before = tree_digest(repo)
    box = make_sandbox()
    box.run("echo x >> pkg/code.py && touch added.py && git add -A && git commit -qm agent")
    box.run("git gc --quiet; git status")
    box.diff()
    box.close()
    assert tree_digest(repo) == before


def test_close_removes_the_checkout(make_sandbox):
    box = make_sandbox()
    box.run("mkdir -p locked/inner && touch locked/inner/f && chmod 000 locked/inner locked")
    workdir = box.workdir
    box.close()
    assert not workdir.exists() and not workdir.parent.parent.exists()
    with pytest.raises(SandboxError, match="closed"):
        box.run("true")


def test_a_context_manager_closes_the_sandbox(repo: Path, bwrap: str):
    with open_sandbox(SandboxConfig(), repo, "HEAD") as box:
        assert box.run("cat pkg/code.py").output == NEW_CODE
    assert not box.workdir.exists()


def test_unknown_commits_and_plain_directories_are_refused(repo: Path, tmp_path: Path, bwrap: str):
    with pytest.raises(SandboxError, match="not in"):
        open_sandbox(SandboxConfig(), repo, "0" * 40)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(SandboxError, match="not a git repository"):
        open_sandbox(SandboxConfig(), plain, "HEAD")


def test_local_needs_the_opt_in(repo: Path):
    with pytest.raises(SandboxError, match="allow_unsafe_local=true"):
        open_sandbox(SandboxConfig(kind="local"), repo, "HEAD")


def test_docker_without_an_engine_says_so(repo: Path):
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0:
        pytest.skip("a Docker engine is reachable here; this checks the message without one")
    with pytest.raises(SandboxError, match="no Docker engine is reachable"):
        open_sandbox(SandboxConfig(kind="docker"), repo, "HEAD")


def test_a_missing_bwrap_names_the_install_command(repo: Path, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxError, match="apt-get install -y bubblewrap"):
        open_sandbox(SandboxConfig(), repo, "HEAD")
