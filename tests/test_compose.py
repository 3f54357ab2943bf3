"""compose/: the file parses, every trajlake command in it is a valid invocation with a valid
configuration, and every variable it uses is documented in .env.example (no Docker engine
here, so this is what can be checked without running it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from trajlake.cli import build_parser, main
from trajlake.config import load_config
from trajlake.stages import BUILTIN

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose" / "compose.yaml"
ENV_EXAMPLE = ROOT / "compose" / ".env.example"
#: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, … as Compose interpolates them
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not NAME=value"
            pairs[name.strip()] = value.strip()
    return pairs


def interpolate(value: object, env: dict[str, str]) -> object:
    """Compose's interpolation of one scalar with `env` as the environment."""
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        name, op, default = match.group(1), match.group(2) or "", match.group(3) or ""
        current = env.get(name)
        if op in (":-", "-") and (current is None or (op == ":-" and current == "")):
            return default
        return current or ""

    return VARIABLE.sub(one, value)


def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def trajlake_argv(service: dict, env: dict[str, str]) -> list[str] | None:
    """entrypoint + command with variables filled in, when the service runs trajlake."""
    entrypoint = service.get("entrypoint") or []
    if not entrypoint or entrypoint[0] != "trajlake":
        return None
    argv = [str(interpolate(a, env)) for a in [*entrypoint[1:], *service.get("command", [])]]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"] if v.startswith("./")}
    return [str(COMPOSE.parent / mounted[a]) if a in mounted else a for a in argv]


def test_compose_parses_and_has_the_broker_the_teacher_and_every_stage() -> None:
    found = services()
    kafka = found["kafka"]
    assert kafka["image"].startswith("${KAFKA_IMAGE:-apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    gpu = found["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and "vllm/vllm-openai" in found["vllm"]["image"]
    assert found["topics"]["command"][:2] == ["topics", "create"]
    assert found["watch"]["command"][0] == "watch" and found["status"]["command"] == ["status"]
    for stage in BUILTIN:
        service = found[stage]
        assert service["command"] == ["stage", stage]
        assert "container_name" not in service and "ports" not in service  # --scale works


def test_every_trajlake_command_is_valid_with_a_valid_config(capsys) -> None:
    env = env_example()
    commands = {n: trajlake_argv(s, env) for n, s in services().items()}
    commands = {name: argv for name, argv in commands.items() if argv is not None}
    assert set(commands) >= {"topics", "watch", "status", *BUILTIN}
    for name, argv in commands.items():
        with pytest.raises(SystemExit) as raised:
            main([*argv, "--help"])
        assert raised.value.code == 0, (name, argv, capsys.readouterr().err)
        args = build_parser().parse_args(argv)
        config = load_config(args.config, args.overrides)
        assert config.bus.kind == "kafka" and config.bus.bootstrap_servers == "kafka:9092"
        assert config.bus.partitions == int(env["TRAJLAKE_PARTITIONS"])
        assert config.teacher.endpoints() == [env["TEACHER_BASE_URL"]]


def test_the_console_script_accepts_a_stage_service_command() -> None:
    argv = trajlake_argv(services()["rollout1"], env_example())
    result = subprocess.run(["trajlake", *argv, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: trajlake stage" in result.stdout


def test_every_variable_is_in_env_example_with_the_same_default() -> None:
    text = COMPOSE.read_text()
    assert not re.search(r"(?<!\$)\$[A-Za-z_]", text), "use ${VAR}, not $VAR"
    used = {m.group(1): m for m in VARIABLE.finditer(text)}
    documented = env_example()
    assert set(used) - set(documented) == set(), "add these to compose/.env.example"
    assert set(documented) - set(used) == set(), "stale in compose/.env.example"
    for name, match in used.items():
        if match.group(2) == ":-":
            assert documented[name] == match.group(3), f"{name}: default differs from .env.example"


def test_the_dockerfile_installs_trajlake_with_its_sandbox() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.MULTILINE)
    assert "bubblewrap" in dockerfile and " git" in dockerfile
    assert re.search(r'pip install [^\n]*"\.\[agent\]"', dockerfile)
    assert 'ENTRYPOINT ["trajlake"]' in dockerfile
    assert services()["rollout1"]["build"] == {"context": "..", "dockerfile": "Dockerfile"}
