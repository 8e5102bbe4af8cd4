"""Configuration: TOML + ROUTER_* environment, errors that name the bad key, no secrets shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from router.config import load_settings
from router.errors import ConfigError

GOOD = """
policy = "weighted"

[providers.bf]
type = "baofoo"
base_url = "http://127.0.0.1:1"
user_name = "u"
user_pass = "very-secret-pass"
weight = 2

[providers.v1]
type = "v1platform"
base_url = "http://127.0.0.1:2"
account = "acct"
password = "another-secret"

[templates.login_code]
content = "您的登录验证码为 {code}"
providers.bf = { send_type = 1, business_type = 4 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "router.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file_loads_with_typed_provider_settings(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    assert set(settings.provider_settings) == {"bf", "v1"}
    assert settings.provider_settings["bf"].weight == 2
    assert "very-secret-pass" not in repr(settings)
    assert "another-secret" not in repr(settings.provider_settings)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_SEND_DEADLINE_S", "7.5")
    monkeypatch.setenv("ROUTER_UNKNOWN_OUTCOMES", "at_least_once")
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.send_deadline_s == 7.5
    assert settings.unknown_outcomes == "at_least_once"


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        (('type = "baofoo"', 'type = "nope"'), "providers.bf.type"),
        (("weight = 2", "weight = -1"), "providers.bf.weight"),
        (('user_name = "u"\n', ""), "providers.bf.user_name"),
        (('policy = "weighted"', 'policy = "fastest"'), "policy"),
        (("providers.bf = {", "providers.ghost = {"), "templates.login_code.providers.ghost"),
        (('policy = "weighted"', 'policy = "weighted"\nbogus_key = 1'), "bogus_key"),
    ],
)
def test_a_bad_key_is_named(tmp_path: Path, patch: tuple[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, GOOD.replace(*patch)))
    assert info.value.key == key
    assert "very-secret-pass" not in str(info.value)


def test_a_wrong_credential_type_does_not_echo_the_secret(tmp_path: Path) -> None:
    text = GOOD.replace('password = "another-secret"', "password = ['another-secret']")
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert "another-secret" not in str(info.value)


def test_missing_file_and_broken_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(write(tmp_path, "policy = = 1"))


def test_check_config_command(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "router", "check-config", str(write(tmp_path, GOOD))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "router",
            "check-config",
            str(write(tmp_path, GOOD.replace("weight = 2", "weight = -1"))),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "providers.bf.weight" in bad.stderr
