"""`trajlake scaffold show` and `trajlake scaffold example`: what the agent model sees."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from trajlake.config import Config

EPILOG = """\
A scaffold is everything the agent model sees and how its actions run: system prompt, task
template, tools and the built-in tool that runs each, how tool results are written, the reply
to a malformed call, what ends the episode. Rollouts record its id; a student is best served
in the scaffold its training data was generated in.

  trajlake scaffold show mini-bash     the default: mini-swe-agent with one bash tool
  trajlake scaffold show swe-agent     SWE-agent's function-calling tools and conventions
  trajlake scaffold show mini-textbased
                                       actions as fenced blocks in the text, no tool calling
                                       (mini-swe-agent 2.4.6's; also swebench-backticks)
  trajlake scaffold example            a scaffold with every field documented: save it to a
                                       file, edit it, and check it with `scaffold show` and
                                       the file's path (a bad field is named with its problem)

Choose one with `--set agent.scaffold=NAME_OR_FILE` (default: mini-bash); the demo runs in
any: `trajlake demo --workdir swe-demo --set agent.scaffold=swe-agent`.
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    scaffold = sub.add_parser(
        "scaffold",
        help="what the agent model sees: show a scaffold and its id, start your own",
        description=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssub = scaffold.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = ssub.add_parser("show", help="print a scaffold as YAML, with its id")
    show.add_argument(
        "scaffold",
        nargs="?",
        metavar="NAME|FILE",
        help="a built-in scaffold or a scaffold YAML file (default: agent.scaffold)",
    )
    show.set_defaults(func=cmd_show)
    ssub.add_parser(
        "example", help="print a scaffold with every field documented, to start from"
    ).set_defaults(func=cmd_example)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so prompts read as the model reads them."""


def _text(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    from trajlake.consumers.scaffold_spec import load_scaffold

    chosen = load_scaffold(args.scaffold or config.agent.scaffold)
    data = chosen.model_dump(mode="json")
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    print(text.rstrip())
    print(f"# scaffold id: {chosen.id()}")
    return 0


def cmd_example(args: argparse.Namespace, config: Config) -> int:
    from trajlake.consumers.scaffold_spec import SCAFFOLD_DIR

    print((SCAFFOLD_DIR / "mini-bash.yaml").read_text(), end="")
    return 0
