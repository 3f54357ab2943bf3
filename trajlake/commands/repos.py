"""`trajlake repo add | list` and `trajlake watch`: the repositories whose commits are used."""

from __future__ import annotations

import argparse
import signal
import sys

from trajlake.config import Config

#: Signals that stop `watch` cleanly (after the poll in progress).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


ENV_ARGUMENT = {
    "metavar": "SOURCE",
    "help": "where its environment spec comes from: auto (detected: Python via uv, "
    "JavaScript/TypeScript via npm, else empty; the default), none, swesmith (its SWE-smith "
    "profile: pip install -e '.[swesmith]'), or a spec file's path; more in env's --help",
}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    repo = sub.add_parser("repo", help="register the repositories whose commits are used")
    rsub = repo.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = rsub.add_parser("add", help="register a local repository (path) or a remote one (URL)")
    add.add_argument("source", metavar="PATH_OR_URL", help="a clone's root, or a git URL")
    add.add_argument("--branch", default="main", help="branch to follow (default: main)")
    add.add_argument("--name", help="name used in events and the lake (default: from the path)")
    add.add_argument(
        "--backfill",
        type=int,
        default=1,
        metavar="K",
        help="the first poll emits the last K commits (default 1: the branch head)",
    )
    add.add_argument("--env", **ENV_ARGUMENT)
    add.set_defaults(func=cmd_repo_add)
    rsub.add_parser("list", help="registered repositories").set_defaults(func=cmd_repo_list)
    change = rsub.add_parser("set", help="change a repository's settings (its environment)")
    change.add_argument("name", metavar="REPO", help="a registered repository's name")
    change.add_argument("--env", required=True, **ENV_ARGUMENT)
    change.set_defaults(func=cmd_repo_set)

    watch = sub.add_parser(
        "watch", help="emit new commits of registered repositories (SIGTERM stops cleanly)"
    )
    watch.add_argument(
        "--interval", type=float, metavar="S", help="seconds between polls (producer.interval_s)"
    )
    watch.add_argument("--once", action="store_true", help="poll every repository once and exit")
    watch.set_defaults(func=cmd_watch)


def cmd_repo_add(args: argparse.Namespace, config: Config) -> int:
    from trajlake.environments import check_source
    from trajlake.repos import Registry

    registry = Registry(config.producer.registry, config.producer.mirrors)
    env = check_source(args.env or "auto")
    repo = registry.add(args.source, args.branch, args.name, args.backfill, env)
    print(
        f"registered {repo.name}: {repo.url} ({repo.branch}, environment: {repo.env}); the "
        f"first `trajlake watch` emits its last {repo.backfill} commit(s)"
    )
    return 0


def cmd_repo_set(args: argparse.Namespace, config: Config) -> int:
    from trajlake.environments import check_source
    from trajlake.repos import Registry

    registry = Registry(config.producer.registry, config.producer.mirrors)
    repo = registry.set_env(args.name, check_source(args.env))
    print(f"{repo.name}: environment from {repo.env} for the rollouts from now on")
    return 0


def cmd_repo_list(args: argparse.Namespace, config: Config) -> int:
    from trajlake.repos import Registry

    repos = Registry(config.producer.registry, config.producer.mirrors).list()
    print(f"{'name':<24} {'branch':<16} {'last emitted':<12}  {'env':<10} url")
    for r in repos:
        last = (r.last_emitted or "-")[:12]
        print(f"{r.name:<24} {r.branch:<16} {last:<12}  {r.env:<10} {r.url}")
    if not repos:
        print("no repositories yet: trajlake repo add PATH_OR_URL", file=sys.stderr)
    return 0


def cmd_watch(args: argparse.Namespace, config: Config) -> int:
    import threading

    from trajlake.producers.commits import PollResult, watch
    from trajlake.repos import Registry

    if not Registry(config.producer.registry, config.producer.mirrors).list():
        print("no repositories registered yet: trajlake repo add PATH_OR_URL", file=sys.stderr)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    failed: list[str] = []

    def report(result: PollResult) -> None:
        if result.error:
            failed.append(result.repo)
            print(f"{result.repo}: {result.error}", file=sys.stderr)
        elif result.emitted:
            print(
                f"{result.repo}: {len(result.emitted)} new commit(s), up to "
                f"{result.emitted[-1][:12]}",
                file=sys.stderr,
            )

    try:
        watch(config, args.interval, once=args.once, stop_event=stop, on_poll=report)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failed and args.once else 0
