"""`trajlake env prune`: remove built environments that no work still needs.

Needed are the environments of every registered repository's branch head (the commits the
next tasks come from) and of every task and PR in the lake that no rollout has answered yet.
Everything else in the cache, and any build left half-done by a killed process, goes.
"""

from __future__ import annotations

import shutil

from trajlake.config import Config
from trajlake.environments.build import built_environments, cache_root
from trajlake.errors import TrajlakeError

#: (repo, repo_url, commit) of the tasks and PRs that no rollout has answered yet.
_PENDING = """
SELECT DISTINCT repo, repo_url, "commit" FROM tasks
WHERE event_id NOT IN (SELECT task_id FROM rollouts_t1)
UNION
SELECT DISTINCT repo, repo_url, "commit" FROM prs
WHERE event_id NOT IN (SELECT pr_id FROM rollouts_t2)
"""


def needed_keys(config: Config) -> set[str]:
    """Build keys of the registered heads and of the pending tasks and PRs."""
    from trajlake.environments import resolve_for
    from trajlake.lake import Lake
    from trajlake.repos import Registry

    wanted = [
        (r.name, r.url, r.branch)
        for r in Registry(config.producer.registry, config.producer.mirrors).list()
    ]
    # a table without files is an empty view: tasks with no rollout yet are pending too
    con = Lake(config.lake.root).connect(["tasks", "rollouts.t1", "prs", "rollouts.t2"])
    try:
        wanted += con.execute(_PENDING).fetchall()
    finally:
        con.close()
    keys = set()
    for repo, url, commit in wanted:
        try:
            keys.add(resolve_for(config, repo, url, commit).key)
        except TrajlakeError:  # a repository gone or a commit rebased away needs nothing
            continue
    return keys


def prune(config: Config, everything: bool = False, dry_run: bool = False) -> tuple[list, int]:
    """(metadata of the environments removed, how many were kept)."""
    keep = set() if everything else needed_keys(config)
    built = built_environments(config)
    gone = [meta for meta in built if meta["environment_id"] not in keep]
    root = cache_root(config)
    if not dry_run:
        for meta in gone:
            shutil.rmtree(root / meta["environment_id"], ignore_errors=True)
        for leftover in root.glob(".build-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    return gone, len(built) - len(gone)
