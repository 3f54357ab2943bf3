"""Real projects for the environment tests: click's sdist from PyPI (its tests included) and a
package from the npm registry, each made into a git repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

CLICK = "click==8.5.1"
FIXED_DATE = "2026-01-01T00:00:00+00:00"
#: An npm package with a runtime dependency, so that the build has something to install.
NPM_PACKAGE = "debug@4.3.4"


def commit_all(repo: Path, message: str) -> str:
    """Commit everything in `repo` (a new repository unless it is one); the new sha, the same
    in every run (fixed dates): the function sampler's draws are seeded by the commit."""
    if not (repo / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm",
         message],
        check=True,
        env={**os.environ, "GIT_AUTHOR_DATE": FIXED_DATE, "GIT_COMMITTER_DATE": FIXED_DATE},
    )  # fmt: skip
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True)
    return done.stdout.decode().strip()


def _unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    [top] = into.iterdir()
    return top


def click_repo(where: Path) -> Path:
    """click's sdist (pip download, tests included) as a git repository with one commit."""
    download = where / "sdist"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
         CLICK, "-d", str(download)],
        check=True,
    )  # fmt: skip
    [archive] = download.glob("click-*.tar.gz")
    repo = _unpack(archive, where / "src").rename(where / "click")
    commit_all(repo, f"{CLICK} from its sdist")
    return repo


#: A test of the package's own code through its dependency (`ms`), for node's test runner.
NPM_TEST = """\
const test = require('node:test');
const assert = require('node:assert');
const debug = require('../src');
test('debug humanizes durations with ms', () => {
  assert.strictEqual(debug.humanize(60000), '1m');
});
"""


def npm_repo(where: Path) -> Path:
    """`npm pack`'s tarball of NPM_PACKAGE as a git repository: its runtime dependency (ms)
    comes from the registry at build time. Its devDependencies (karma, browserify, xo: hundreds
    of packages) are dropped and its test script is node's runner over one test of ours, to keep
    the build a CI test can afford."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["npm", "pack", NPM_PACKAGE, "--json", "--pack-destination", str(where)],
        capture_output=True,
        text=True,
        check=True,
        cwd=where,
    )
    archive = where / json.loads(done.stdout)[0]["filename"]
    repo = _unpack(archive, where / "src").rename(where / "npm-project")
    manifest = json.loads((repo / "package.json").read_text())
    manifest.pop("devDependencies", None)
    manifest["scripts"] = {"test": "node --test test/"}
    (repo / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (repo / "test").mkdir()
    (repo / "test" / "debug.test.js").write_text(NPM_TEST)
    commit_all(repo, f"{NPM_PACKAGE} from the npm registry")
    return repo
