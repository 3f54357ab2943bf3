"""SWE-smith repository profiles as trajlake environment specs.

SWE-smith (PyPI `swesmith`, the `swesmith` extra) ships a checked install and test recipe, a
*profile*, for several hundred repositories, each written for one commit and baked into a
published Docker image. Reusing a profile spares `--env auto` its guessing for those
repositories. Profiles assume the image's conda env `testbed`; trajlake builds a uv venv at
/env/venv instead, so the commands are translated, not copied:

- install: `uv venv` first; `pip install X` and `python -m pip install X` become
  `uv pip install --python /env/venv/bin/python X`; `python setup.py install|develop` becomes
  `uv pip install .` / `-e .`; conda `source …activate` / `conda activate` steps are dropped,
  and so are `apt-get` commands (the venv cannot change the image's system packages: a missing
  library then fails the install loudly). Other commands (make, sed, rm, git) are kept as they
  are. Without any install command left, the checkout is installed with `-e .`; pytest is
  installed last when the tests run under pytest.
- test: activation steps are dropped; `pytest`, `python -m pytest` and `uv run pytest` become
  `python -m pytest` (the venv's python comes first on PATH) with a JUnit report, whose path is
  `JUNIT_XML`; a trailing `-k` (SWE-smith appends per-task test names there) is removed. Other
  test commands (`python test.py`) keep their output summary.

Only Python profiles are translated; Go, Rust, JavaScript, … profiles raise ConfigError.
`swesmith.profiles` takes about 2 s to import, so it is imported on first use.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from trajlake.errors import ConfigError

VENV = "/env/venv"
UV_PIP = f"uv pip install --python {VENV}/bin/python"
JUNIT_XML = "/tmp/trajlake-junit.xml"
KEY_FILES = ["pyproject.toml", "setup.py", "setup.cfg", "requirements*.txt"]
_EXTRA = "pip install -e '.[swesmith]' (swesmith==0.0.9 with swebench==4.1.0)"

# scheme://host/path, scp-like user@host:path, or a scheme-less host.tld/path
_URL = re.compile(r"^(?:[A-Za-z][\w+.-]*://[^/]+/|[^/@:\s]+@[^/:\s]+:|[\w-]+(?:\.[\w-]+)+/)(.+)$")
_ACTIVATE = re.compile(r"^(?:source|\.)\s+\S*activate\S*(?:\s+\S+)?$|^conda\s+activate\b.*$")
_LEADING_ACTIVATE = re.compile(
    r"^(?:(?:source|\.)\s+\S*activate\S*\s*(?:;|&&)\s*|conda\s+activate\s+\S+\s*(?:;|&&)\s*)+"
)
_PIP = re.compile(r"(^|&&\s*|;\s*)(?:python3?\s+-m\s+pip|pip3?)\s+install(?=\s|$)")
_SETUP_PY = re.compile(r"^python3?\s+setup\.py\s+(install|develop)\s*$")
_PYTEST = re.compile(r"^(?:\S*/)?(?:uv\s+run\s+)?(?:python3?\s+-m\s+)?pytest(?=\s|$)(.*)$")
_REQUIREMENTS = re.compile(r"(?:^|\s)(?:-r|--requirement)\s*=?\s*(\S+)")


def swesmith_spec(repo_url: str, repo_name: str) -> dict:
    """The environment spec of the SWE-smith profile for this repository.

    A remote URL (`https://github.com/pallets/click.git`, `git@github.com:pallets/click`,
    `github.com/pallets/click`) matches a profile by owner/name, or names a SWE-smith mirror
    (`swesmith/pallets__click.fde47b4b`) directly; a local path matches by `repo_name` or by the
    path's last component (`click`). Where several profiles match (one repository profiled at
    two commits), the first in swesmith's registry order, its source order, wins: it does not
    depend on the host or the clock. Imports nothing from the network and builds nothing.
    """
    registry, python_profile = _swesmith()
    matches, wanted = _matching(registry, repo_url, repo_name)
    profile = _python_profile(matches, python_profile, wanted)
    test, uses_pytest = _test_command(profile.test_cmd, profile.repo_name)
    return {
        "name": f"swesmith:{profile.repo_name}",
        "toolchain": "python",
        "install": _install_commands(profile.install_cmds, uses_pytest),
        "test": test,
        "results": "junit" if uses_pytest else "summary",
        "key_files": _key_files(profile.install_cmds),
        "env": {"VIRTUAL_ENV": VENV},
        "path": [f"{VENV}/bin"],
        "image": profile.image_name,
        "source_commit": profile.commit,
    }


def _swesmith():
    """swesmith's profile registry and its Python profile class, or what to install."""
    try:
        from swesmith.profiles import registry
        from swesmith.profiles.python import PythonProfile
    except ImportError as exc:  # absent, or a swebench without DOCKER_USER (5.x)
        raise ConfigError(f"SWE-smith profiles cannot be loaded ({exc}): {_EXTRA}") from exc
    return registry, PythonProfile


def _matching(registry, repo_url: str, repo_name: str) -> tuple[list, str]:
    """Profiles (registry order) for the repository, and what was looked for, for messages."""
    profiles = [cls() for cls in dict.fromkeys(registry.data.values())]
    url = _URL.match(repo_url.strip())
    parts = [p for p in url[1].strip("/").split("/") if p] if url else []
    if len(parts) >= 2:
        owner, name = parts[-2], _strip_git(parts[-1])
        if f"{owner}/{name}" in registry.data:  # the SWE-smith mirror of a profile
            return [registry.data[f"{owner}/{name}"]()], f"{owner}/{name}"
        key = (owner.lower(), name.lower())
        return [p for p in profiles if (p.owner.lower(), p.repo.lower()) == key], f"{owner}/{name}"
    names = {_strip_git(PurePosixPath(repo_url.rstrip("/")).name).lower(), repo_name.lower()}
    names.discard("")
    return [p for p in profiles if p.repo.lower() in names], " or ".join(sorted(names))


def _python_profile(matches: list, python_profile: type, wanted: str):
    """The first Python profile among the matches; ConfigError naming the way out otherwise."""
    for profile in matches:
        if isinstance(profile, python_profile):
            return profile
    if not matches:
        raise ConfigError(f"no SWE-smith profile for {wanted}: use --env auto or a spec file")
    language = type(matches[0]).__mro__[1].__name__.removesuffix("Profile")
    raise ConfigError(
        f"the SWE-smith profile for {wanted} ({matches[0].repo_name}) is a {language} profile; "
        "only Python profiles are translated here: use --env auto or a spec file"
    )


def _strip_git(name: str) -> str:
    return name[:-4] if name.endswith(".git") else name


def _install_commands(profile_cmds: list[str], uses_pytest: bool) -> list[str]:
    """The venv, the profile's installs translated to uv, then pytest if the tests need it."""
    translated = [cmd for cmd in map(_translate_install, profile_cmds) if cmd]
    commands = [f"uv venv {VENV} --python {{python}} --quiet"]
    commands += translated or [f"{UV_PIP} -e ."]
    if uses_pytest:
        commands.append(f"{UV_PIP} pytest")
    return commands


def _translate_install(command: str) -> str | None:
    """One profile install command for the venv; None for conda and apt-get steps."""
    command = _LEADING_ACTIVATE.sub("", command.strip()).strip()
    if not command or _ACTIVATE.match(command) or command.startswith("apt-get"):
        return None
    setup_py = _SETUP_PY.match(command)
    if setup_py:
        return f"{UV_PIP} {'-e .' if setup_py[1] == 'develop' else '.'}"
    return _PIP.sub(lambda m: f"{m[1]}{UV_PIP}", command)


def _test_command(profile_cmd: str, repo_name: str) -> tuple[str, bool]:
    """The profile's test command without conda, and whether it runs pytest."""
    steps = [s.strip() for s in re.split(r";|&&", profile_cmd) if s.strip()]
    steps = [s for s in steps if not _ACTIVATE.match(s)]
    if not steps:
        raise ConfigError(
            f"the SWE-smith profile {repo_name} has no test command besides conda activation: "
            "use --env auto or a spec file"
        )
    uses_pytest = False
    for i, step in enumerate(steps):
        pytest = _PYTEST.match(step)
        if pytest:
            args = re.sub(r"\s+-k\s*$", "", pytest[1])
            steps[i] = f"python -m pytest{args} --junitxml={JUNIT_XML}"
            uses_pytest = True
    return " && ".join(steps), uses_pytest


def _key_files(profile_cmds: list[str]) -> list[str]:
    """Files whose change changes the environment: packaging files, -r files, a Makefile."""
    files = list(KEY_FILES)
    for command in profile_cmds:
        files += [f.strip("'\"") for f in _REQUIREMENTS.findall(command)]
        if re.match(r"^make(\s|$)", command.strip()):
            files.append("Makefile")
    return list(dict.fromkeys(files))
