"""`trajlake env build | list | show | test | shell | prune`: repositories' own environments."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from trajlake.config import Config

EPILOG = """\
A repository's environment is its dependencies installed, built once per machine from a spec
(what to install, how to run the tests, which files key the build) and mounted read-only into
every rollout's sandbox, with the checkout at /testbed: `python`, the package and pytest are
the repository's own, and the network stays off. Where the spec comes from is chosen per
repository, by the --env option of `repo add` and `repo set`: auto (Python via uv,
JavaScript/TypeScript via npm, else an empty environment), none, swesmith, or a spec file.

  trajlake env build myproject        build it now (rollouts would, at their first need)
  trajlake env show myproject         the spec, its key, whether it is built
  trajlake env test myproject         run its tests in the sandbox: passed/failed counts
  trajlake env shell myproject        a shell in exactly the sandbox a rollout gets
  trajlake env shell myproject -- python -m pytest -q tests/test_ops.py
  trajlake env list                   environments built on this machine
  trajlake env prune --dry-run        what no registered head or pending task needs
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    env = sub.add_parser(
        "env",
        help="repositories' environments: build, inspect, test, open a shell in one",
        description=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    esub = env.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, func, text in [
        ("build", cmd_build, "build the environment of a repository at a commit (cached)"),
        ("show", cmd_show, "the spec, key and build of a repository's environment"),
        ("test", cmd_test, "run the spec's test command in the sandbox and print its counts"),
        ("shell", cmd_shell, "a shell (or one command after --) in a rollout's sandbox"),
    ]:
        one = esub.add_parser(name, help=text)
        one.add_argument("repo", metavar="REPO", help="a registered repository's name")
        one.add_argument("--commit", default="", help="any revision (default: its branch head)")
        if name == "shell":
            one.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD: run CMD only")
        one.set_defaults(func=func)
    esub.add_parser("list", help="environments built on this machine").set_defaults(func=cmd_list)
    prune = esub.add_parser(
        "prune", help="remove environments no registered head nor pending task needs"
    )
    prune.add_argument("--dry-run", action="store_true", help="only print what would go")
    prune.add_argument("--all", action="store_true", help="remove every built environment")
    prune.set_defaults(func=cmd_prune)


def _resolved(args: argparse.Namespace, config: Config):
    from trajlake.environments import resolve_for
    from trajlake.repos import Registry

    repo = Registry(config.producer.registry, config.producer.mirrors).get(args.repo)
    return repo, resolve_for(config, repo.name, repo.url, args.commit or repo.branch)


def _built(args: argparse.Namespace, config: Config):
    from trajlake.environments import ensure_environment

    _, resolved = _resolved(args, config)
    return ensure_environment(config, resolved, lambda line: print(line, file=sys.stderr))


def _sandbox(config: Config, env):
    """A rollout's sandbox on the environment's commit, with the environment mounted."""
    from trajlake.sandbox import open_sandbox

    return open_sandbox(config.sandbox, env.resolved.git_dir, env.resolved.commit, env.mount())


def cmd_build(args: argparse.Namespace, config: Config) -> int:
    env = _built(args, config)
    meta = env.meta
    how = "built in" if env.built_now else "already built (a cache hit; the build took"
    print(
        f"{args.repo}: environment {env.environment_id} ({meta['spec_id']}) at "
        f"{env.resolved.commit[:12]}: {len(meta['packages'])} packages, "
        f"{meta['size_bytes'] / 1e6:.1f} MB, {how} {meta['seconds']:.1f} s"
        f"{'' if env.built_now else ')'}, in {env.root}"
    )
    return 0


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    import yaml

    from trajlake.environments.build import META, cache_root

    repo, resolved = _resolved(args, config)
    built = cache_root(config) / resolved.key / META
    print(f"repository: {repo.name} ({repo.url})\nsource: {repo.env}")
    print(f"commit: {resolved.commit}\nenvironment: {resolved.key}")
    print(f"toolchain: {resolved.spec.toolchain} {resolved.toolchain_version}".rstrip())
    print("key files: " + (", ".join(resolved.key_files) or "none"))
    print(f"built: {'yes, ' + str(built.parent) if built.is_file() else 'no (trajlake env build)'}")
    print(f"spec ({resolved.spec.spec_id()}):")
    spec = resolved.spec.model_dump(exclude_defaults=True)
    print(yaml.safe_dump(spec, sort_keys=False, width=100).rstrip())
    return 0


def cmd_test(args: argparse.Namespace, config: Config) -> int:
    from trajlake.environments.results import run_tests

    env = _built(args, config)
    if not env.resolved.spec.test:
        print(f"the spec {env.resolved.spec.name} has no test command", file=sys.stderr)
        return 1
    with _sandbox(config, env) as box:
        result, counts = run_tests(box, env.resolved.spec)
    print(result.output[-3000:].rstrip())
    print(f"{args.repo} at {env.resolved.commit[:12]}: {counts.line()} (exit {result.returncode})")
    return 0 if counts.found and counts.failed == 0 else 1


def cmd_shell(args: argparse.Namespace, config: Config) -> int:
    env = _built(args, config)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with _sandbox(config, env) as box:
        if command:
            result = box.run(shlex.join(command) if len(command) > 1 else command[0])
            sys.stdout.write(result.output)
            return result.returncode
        print(
            f"a rollout's sandbox for {args.repo} at {env.resolved.commit[:12]} (environment "
            f"{env.environment_id}): changes vanish on exit",
            file=sys.stderr,
        )
        launch = box.launch("exec bash -i")
        return subprocess.run(launch.argv, env=launch.env, cwd=box.workdir, check=False).returncode


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    from trajlake.environments.build import built_environments, cache_root

    rows = built_environments(config)
    print(f"{'environment':<22} {'spec':<22} {'repository':<16} {'commit':<12} {'MB':>7}  built")
    for meta in rows:
        print(
            f"{meta['environment_id']:<22} {meta['spec_id']:<22} {meta['repo']:<16} "
            f"{meta['commit'][:12]:<12} {meta['size_bytes'] / 1e6:>7.1f}  {meta['built_at'][:19]}"
        )
    if not rows:
        print(f"no environments built in {cache_root(config)} yet", file=sys.stderr)
    return 0


def cmd_prune(args: argparse.Namespace, config: Config) -> int:
    from trajlake.environments.prune import prune

    removed, kept = prune(config, everything=args.all, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for meta in removed:
        print(f"{verb} {meta['environment_id']} ({meta['repo']} {meta['commit'][:12]})")
    print(f"{verb} {len(removed)} environment(s); kept {kept}")
    return 0
