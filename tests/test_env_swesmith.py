"""SWE-smith profiles translated to environment specs, against the real swesmith package."""

import re
import socket
import sys

import pytest
import yaml

profiles = pytest.importorskip("swesmith.profiles")

from trajlake.environments.swesmith import JUNIT_XML, UV_PIP, swesmith_spec  # noqa: E402
from trajlake.errors import ConfigError  # noqa: E402

pytestmark = pytest.mark.unit

KEYS = {"name", "toolchain", "install", "test", "results", "key_files", "env", "path", "image"}
CLICK = profiles.registry.get("pallets__click.fde47b4b")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """The adapter reads profiles only: anything that opens a connection is a bug."""

    def refuse(*args, **kwargs):
        raise AssertionError("swesmith_spec opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize(
    "url, name",
    [
        ("https://github.com/pallets/click.git", "click"),
        ("git@github.com:pallets/click.git", "anything"),
        ("github.com/pallets/click", "anything"),
        ("/data/repos/click", "anything"),
        ("/data/repos/checkout", "click"),
    ],
)
def test_click_resolves_by_url_or_local_name(url, name):
    spec = swesmith_spec(url, name)
    assert spec["name"] == "swesmith:pallets__click.fde47b4b"
    assert spec["source_commit"] == CLICK.commit
    assert re.fullmatch(r"[0-9a-f]{7,40}", spec["source_commit"])
    assert spec["image"] == CLICK.image_name


def test_click_spec_is_a_uv_venv_and_plain_pytest():
    spec = swesmith_spec("https://github.com/pallets/click.git", "click")
    assert set(spec) == KEYS | {"source_commit"}
    assert spec["install"][0] == "uv venv /env/venv --python {python} --quiet"
    assert all(cmd.startswith(UV_PIP) for cmd in spec["install"][1:])
    assert f"{UV_PIP} -e ." in spec["install"]
    assert spec["install"][-1] == f"{UV_PIP} pytest"
    assert "conda" not in spec["test"] and "source" not in spec["test"] and ";" not in spec["test"]
    assert spec["test"].startswith("python -m pytest ")
    assert spec["test"].endswith(f"--junitxml={JUNIT_XML}")
    assert spec["results"] == "junit"
    assert spec["env"] == {"VIRTUAL_ENV": "/env/venv"} and spec["path"] == ["/env/venv/bin"]
    assert {"pyproject.toml", "setup.py", "setup.cfg"} <= set(spec["key_files"])
    assert yaml.safe_load(yaml.safe_dump(spec)) == spec


@pytest.mark.parametrize(
    "url, test, results",
    [  # uv run pytest; a trailing -k left for task names; a test runner that is not pytest
        ("https://github.com/pydantic/pydantic", "python -m pytest --disable-warnings", "junit"),
        ("https://github.com/python/mypy", "python -m pytest --color=no -rA --junitxml=", "junit"),
        ("https://github.com/tornadoweb/tornado", "python -m tornado.test --verbose", "summary"),
    ],
)
def test_unusual_test_commands(url, test, results):
    spec = swesmith_spec(url, "x")
    assert spec["test"].startswith(test) and spec["results"] == results
    assert "conda" not in spec["test"] and "uv run" not in spec["test"]


def test_requirements_files_key_the_build_and_apt_get_is_dropped():
    mypy = swesmith_spec("https://github.com/python/mypy", "mypy")
    assert f"{UV_PIP} -r test-requirements.txt" in mypy["install"]
    assert "test-requirements.txt" in mypy["key_files"]
    scrapy = swesmith_spec("https://github.com/scrapy/scrapy", "scrapy")
    assert not any("apt-get" in cmd for cmd in scrapy["install"])


def test_unknown_repository_names_the_way_out():
    with pytest.raises(
        ConfigError, match="no SWE-smith profile for nobody/nothing: use --env auto"
    ):
        swesmith_spec("https://github.com/nobody/nothing.git", "nothing")
    with pytest.raises(ConfigError, match="no SWE-smith profile for .*nothing"):
        swesmith_spec("/data/repos/nothing", "nothing")


def test_non_python_profile_is_refused():
    with pytest.raises(ConfigError, match="Go profile; only Python profiles are translated"):
        swesmith_spec("https://github.com/gin-gonic/gin", "gin")


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "swesmith.profiles", None)
    with pytest.raises(ConfigError, match=re.escape("pip install -e '.[swesmith]'")):
        swesmith_spec("https://github.com/pallets/click.git", "click")
