"""The built-in agent tools on a real checkout in the real sandbox: every editor command, its bad
inputs, and bash, submit and think.

Most checks run under bubblewrap; the editor's edit/undo and path checks run under the local kind
too, to show nothing depends on bubblewrap. The repository has a `json.py` at its root that exits
when imported: the editor must not pick up the checkout's modules.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import git_repo

from trajlake.config import SandboxConfig
from trajlake.sandbox import Sandbox, open_sandbox
from trajlake.tools import ToolError, ToolResult, run_tool
from trajlake.tools.builtin import THOUGHT_LOGGED

pytestmark = [pytest.mark.tools, pytest.mark.sandbox, pytest.mark.scaffold]  # pytest -m scaffold

CODE = """\
def add(a, b):
    return a + b


def twice(x):
    return x + x


def same(x):
    return x + x
"""
FILES = {
    "pkg/code.py": CODE,
    "pkg/sub/deep/far.py": "x = 1\n",
    "pkg/.cache.txt": "hidden\n",
    ".hidden/secret.txt": "hidden\n",
    "README.md": "# demo\nfirst\nsecond\n",
    "json.py": 'raise SystemExit("the checkout\'s json.py was imported")\n',
}
TRUNCATED = "<response clipped><NOTE>"


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository with text, a binary file, hidden entries and symlinks in and out of it."""
    path = tmp_path / "repo"
    path.mkdir()
    (path / "data.bin").write_bytes(bytes(range(256)) * 4)
    (path / "latin.txt").write_bytes("café = 1\r\nthé = 2\r\n".encode("latin-1"))
    os.symlink("pkg/code.py", path / "inside_link")
    os.symlink("/etc/hostname", path / "outside_link")
    return git_repo(path, FILES)


@pytest.fixture
def open_box(repo: tuple[Path, str]) -> Iterator[Callable[..., Sandbox]]:
    """open_sandbox on the repository's commit; `kind` and config fields by keyword."""
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is missing: `apt-get install -y bubblewrap` (CI installs it)")
    opened: list[Sandbox] = []

    def make(kind: str = "bubblewrap", **fields: object) -> Sandbox:
        config = SandboxConfig(kind=kind, allow_unsafe_local=True, **fields)
        opened.append(open_sandbox(config, repo[0], repo[1]))
        return opened[-1]

    yield make
    for box in opened:
        box.close()


def edit(box: Sandbox, **arguments: object) -> ToolResult:
    return run_tool("str_replace_editor", box, arguments)


def refused(box: Sandbox, **arguments: object) -> str:
    """The message of an editor call that must fail."""
    result = edit(box, **arguments)
    assert result.error, result
    return result.output


def cat(box: Sandbox, path: str) -> str:
    result = run_tool("bash", box, {"command": f"cat {path}"})
    assert not result.error, result
    return result.output


def numbered(lines: list[str], first: int = 1) -> str:
    return "".join(f"{n:6}\t{line}\n" for n, line in enumerate(lines, first))


def test_view_numbers_lines_like_cat_n_and_lists_directories_two_levels_deep(open_box):
    box = open_box()
    lines = CODE.splitlines()
    header = "Here's the result of running `cat -n` on pkg/code.py:\n"
    assert edit(box, command="view", path="pkg/code.py").output == header + numbered(lines)
    absolute = "/testbed/pkg/code.py"  # where every sandbox has the checkout
    assert edit(box, command="view", path=absolute).output.startswith(
        f"Here's the result of running `cat -n` on {absolute}:\n     1\tdef add(a, b):\n"
    )
    ranged = edit(box, command="view", path="pkg/code.py", view_range=[5, 6]).output
    assert ranged == header + numbered(lines[4:6], 5)
    to_end = edit(box, command="view", path="pkg/code.py", view_range=[9, -1]).output
    assert to_end == header + numbered(lines[8:], 9)
    linked = edit(box, command="view", path="inside_link").output
    assert linked == "Here's the result of running `cat -n` on inside_link:\n" + numbered(lines)

    listing = edit(box, command="view", path=".")
    assert not listing.error
    assert listing.output == (
        "Here's the files and directories up to 2 levels deep in ., excluding hidden items:\n"
        ".\n./README.md\n./data.bin\n./inside_link\n./json.py\n./latin.txt\n./outside_link\n"
        "./pkg\n./pkg/code.py\n./pkg/sub\n"
    )
    assert edit(box, command="view", path="pkg/").output == (
        "Here's the files and directories up to 2 levels deep in pkg/, excluding hidden items:\n"
        "pkg\npkg/code.py\npkg/sub\npkg/sub/deep\n"
    )


@pytest.mark.parametrize("kind", ["bubblewrap", "local"])
def test_str_replace_needs_exactly_one_occurrence_and_undo_walks_back(open_box, kind: str):
    box = open_box(kind)
    twice = "def twice(x):\n    return x + x"
    message = refused(box, command="str_replace", path="pkg/code.py", old_str="return x + x")
    assert message.startswith("No replacement was performed. Multiple occurrences of old_str")
    assert "in lines [6, 10]" in message
    missing = refused(box, command="str_replace", path="pkg/code.py", old_str="return x * 3")
    assert "did not appear verbatim in pkg/code.py" in missing
    same = refused(box, command="str_replace", path="pkg/code.py", old_str=twice, new_str=twice)
    assert "is the same as new_str" in same
    assert cat(box, "pkg/code.py") == CODE and box.diff() == ""

    doubled = "def twice(x):\n    # doubled\n    return 2 * x"
    done = edit(box, command="str_replace", path="pkg/code.py", old_str=twice, new_str=doubled)
    assert not done.error, done
    assert done.output.startswith(
        "The file pkg/code.py has been edited. Here's the result of running `cat -n` on a "
        "snippet of pkg/code.py:\n"
    )
    assert "     1\tdef add(a, b):\n" in done.output and "     6\t    # doubled\n" in done.output
    assert "    11\t    return x + x\n" in done.output  # 4 lines after the edit
    first_edit = CODE.replace("return x + x", "# doubled\n    return 2 * x", 1)
    assert cat(box, "pkg/code.py") == first_edit
    edit(box, command="str_replace", path="pkg/code.py", old_str="a + b", new_str="b + a")
    assert "+    return b + a" in box.diff()

    undone = edit(box, command="undo_edit", path="pkg/code.py")
    assert undone.output.startswith("Last edit to pkg/code.py undone successfully.")
    assert cat(box, "pkg/code.py") == first_edit
    edit(box, command="undo_edit", path="pkg/code.py")
    assert cat(box, "pkg/code.py") == CODE and box.diff() == ""
    nothing = refused(box, command="undo_edit", path="pkg/code.py")
    assert nothing == "No edit history found for pkg/code.py."
    assert run_tool("bash", box, {"command": "ls .git/trajlake-editor"}).output.strip()


def test_create_and_insert(open_box):
    box = open_box()
    text = "EOF\n'$(touch pwned)' `id` \"q\" \\n\nTRAJLAKE_EDITOR_0123\n\u00e9\u2028\t\n"
    created = edit(box, command="create", path="pkg/new.txt", file_text=text)
    assert created.output == "File created successfully at: pkg/new.txt"
    assert (box.workdir / "pkg" / "new.txt").read_text() == text  # verbatim, nothing expanded
    assert not (box.workdir / "pwned").exists()
    again = refused(box, command="create", path="README.md", file_text="x")
    assert (
        again == "File already exists at: README.md. Cannot overwrite files using command `create`."
    )
    orphan = refused(box, command="create", path="no/such/dir.py", file_text="x")
    assert orphan == "The parent directory no/such does not exist. Please create it first."
    assert "is required for command: create" in refused(box, command="create", path="x.py")

    edit(box, command="insert", path="README.md", insert_line=0, new_str="<!-- top -->")
    edit(box, command="insert", path="README.md", insert_line=2, new_str="middle\nmore")
    done = edit(box, command="insert", path="README.md", insert_line=6, new_str="last")
    assert cat(box, "README.md") == "<!-- top -->\n# demo\nmiddle\nmore\nfirst\nsecond\nlast\n"
    assert done.output.startswith(
        "The file README.md has been edited. Here's the result of running `cat -n` on a "
        "snippet of the edited file:\n"
    )
    assert numbered(["more", "first", "second", "last"], 4) in done.output
    for line in (-1, 8):
        message = refused(box, command="insert", path="README.md", insert_line=line, new_str="x")
        assert message == (
            f"Invalid `insert_line` parameter: {line}. It should be within the range of lines "
            "of the file: [0, 7]"
        )
    no_text = refused(box, command="insert", path="README.md", insert_line=1)
    assert no_text == "Parameter `new_str` is required for command: insert"
    no_int = refused(box, command="insert", path="README.md", insert_line="two", new_str="x")
    assert "`insert_line` must be an integer" in no_int

    removed = edit(box, command="undo_edit", path="pkg/new.txt")
    assert "did not exist before it was created" in removed.output
    assert not (box.workdir / "pkg" / "new.txt").exists()
    assert "new.txt" not in box.diff() and ".git" not in box.diff()


@pytest.mark.parametrize("kind", ["bubblewrap", "local"])
def test_paths_outside_the_checkout_are_refused(open_box, kind: str):
    box = open_box(kind)
    outside = "only files inside the repository can be viewed or edited"
    assert outside in refused(box, command="create", path="../escaped.txt", file_text="x")
    assert not (box.workdir.parent / "escaped.txt").exists()
    assert outside in refused(box, command="view", path="/etc/hostname")
    assert outside in refused(box, command="view", path="pkg/../../repo/../x")
    assert outside in refused(box, command="view", path="outside_link")
    assert outside in refused(box, command="str_replace", path="outside_link", old_str="a")
    run_tool("bash", box, {"command": "ln -s ../escaped-by-link.txt dangling"})
    assert outside in refused(box, command="create", path="dangling", file_text="x")
    assert not (box.workdir.parent / "escaped-by-link.txt").exists()
    hook = "[core]\n\tfsmonitor = evil"
    git_config = refused(box, command="insert", path=".git/config", insert_line=0, new_str=hook)
    assert "inside .git" in git_config


def test_bad_calls_get_a_clear_message(open_box):
    box = open_box()
    cases = {
        "The path nope.py does not exist. Please provide a valid path.": {
            "command": "view", "path": "nope.py"},
        "The path pkg is a directory and only the `view` command can be used on directories": {
            "command": "str_replace", "path": "pkg", "old_str": "x"},
        'Unrecognized command delete. The allowed commands for the str_replace_editor tool are: '
        '"view", "create", "str_replace", "insert", "undo_edit"': {
            "command": "delete", "path": "README.md"},
        "Parameter `path` is required for command: view": {"command": "view"},
        "Parameter `old_str` is required for command: str_replace": {
            "command": "str_replace", "path": "README.md"},
        "Unexpected argument(s): line.": {"command": "view", "path": "README.md", "line": 1},
        "Invalid `view_range`. It should be a list of two integers.": {
            "command": "view", "path": "README.md", "view_range": [1]},
        "Its first element `0` should be within the range of lines of the file: [1, 3]": {
            "command": "view", "path": "README.md", "view_range": [0, 2]},
        "Its second element `9` should be smaller than the number of lines in the file: `3`": {
            "command": "view", "path": "README.md", "view_range": [1, 9]},
        "Its second element `1` should be larger or equal than its first `3`": {
            "command": "view", "path": "README.md", "view_range": [3, 1]},
        "The `view_range` parameter is not allowed when `path` points to a directory.": {
            "command": "view", "path": "pkg", "view_range": [1, 2]},
        "No edit history found for README.md.": {"command": "undo_edit", "path": "README.md"},
    }  # fmt: skip
    for expected, arguments in cases.items():
        assert expected in refused(box, **arguments), arguments
    assert box.diff() == ""


def test_binary_huge_and_non_utf8_files(open_box):
    box = open_box()
    assert "is binary" in refused(box, command="view", path="data.bin")
    assert "is binary" in refused(box, command="str_replace", path="data.bin", old_str="a")

    write_big = "python3 -c \"print('\\n'.join(f'line {i} ' + 'x' * 50 for i in range(1, 3001)))\""
    run_tool("bash", box, {"command": f"{write_big} > big.txt"})
    view = edit(box, command="view", path="big.txt").output
    assert view.endswith("</NOTE>\n") and TRUNCATED in view
    shown = [line.split("\t", 1)[1] for line in view.splitlines()[1:-1]]
    assert len("\n".join(shown)) <= 16_000 and shown[0] == "line 1 " + "x" * 50
    tail = edit(box, command="view", path="big.txt", view_range=[2999, -1]).output
    assert tail.endswith(f"  2999\tline 2999 {'x' * 50}\n  3000\tline 3000 {'x' * 50}\n")

    run_tool("bash", box, {"command": "head -c 11000000 /dev/zero | tr '\\0' a > huge.txt"})
    assert "more than the editor handles" in refused(box, command="view", path="huge.txt")
    too_long = refused(box, command="create", path="long.txt", file_text="y" * 150_000)
    assert "write a large file in parts" in too_long
    assert not (box.workdir / "long.txt").exists()

    edit(box, command="str_replace", path="latin.txt", old_str="thé = 2", new_str="thé = 3")
    assert (box.workdir / "latin.txt").read_bytes() == "café = 1\r\nthé = 3\r\n".encode("latin-1")


def test_bash_submit_and_think(open_box):
    box = open_box(command_timeout_s=2)
    failed = run_tool("bash", box, {"command": "echo out; echo err >&2; exit 3"})
    assert (failed.output, failed.returncode, failed.error) == ("out\nerr\n", 3, True)
    quiet = run_tool("bash", box, {"command": "true"})
    assert (quiet.output, quiet.returncode, quiet.error) == ("", 0, False)
    slow = run_tool("bash", box, {"command": "sleep 30"})
    assert slow.timed_out and slow.error
    assert "`command` is required" in run_tool("bash", box, {"command": " "}).output
    assert "Unexpected argument(s) for bash: cmd." in run_tool("bash", box, {"cmd": "ls"}).output

    thought = run_tool("think", box, {"thought": "rm -rf / would be bad; just think"})
    assert thought == ToolResult(THOUGHT_LOGGED)
    assert run_tool("think", box, {}).error and box.diff() == ""

    assert run_tool("submit", box, {"force": True}).error
    edit(box, command="str_replace", path="pkg/code.py", old_str="a + b", new_str="b + a")
    submitted = run_tool("submit", box, {})
    assert submitted.submitted and not submitted.error
    assert submitted.output == box.diff() and "+    return b + a" in submitted.output
    with pytest.raises(ToolError, match="no built-in tool 'edit'"):
        run_tool("edit", box, {})
