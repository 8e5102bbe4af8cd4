"""A broken template is a ConfigError naming its dotted key at load time, never a send error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from router.config import load_settings
from router.errors import ConfigError

PROVIDERS: dict[str, Any] = {
    "bf": {"type": "baofoo", "base_url": "http://127.0.0.1:1", "user_name": "u", "user_pass": "p"},
    "rl": {
        "type": "ronglian",
        "base_url": "http://127.0.0.1:2",
        "account_sid": "sid",
        "auth_token": "token-secret",
        "app_id": "app",
    },
}


def load(template: dict[str, Any]) -> None:
    load_settings(providers=PROVIDERS, templates={"login_code": template})


@pytest.mark.parametrize(
    "content",
    [
        "hi {name",
        "hi name}",
        "code {0}",
        "code {}",
        "code {a.b}",
        "code {a[0]}",
        "code {code:d}",
        "code {code:.2f}",
        "code {code!z}",
        "code {code:{width}}",
        "   ",
    ],
)
def test_a_broken_content_template_names_its_key(content: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({"content": content})
    assert info.value.key == "templates.login_code.content"
    assert info.value.problem


def test_a_broken_per_provider_content_names_its_key() -> None:
    with pytest.raises(ConfigError) as info:
        load({"content": "code {code}", "providers": {"bf": {"content": "code {code"}}})
    assert info.value.key == "templates.login_code.providers.bf.content"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"template_id": "1", "params": ["code", "minutes", "nope"]}, "nope"),
        ({"template_id": "1", "params": "code"}, "valid list"),
        ({"template_id": "1", "params": [1, 2]}, "valid string"),  # key: params.0
    ],
)
def test_template_params_nothing_can_fill_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        load({"content": "code {code}", "defaults": {"minutes": "5"}, "providers": {"rl": options}})
    assert info.value.key.startswith("templates.login_code.providers.rl.params")
    assert "token-secret" not in str(info.value)


@pytest.mark.parametrize(
    "template",
    [
        {"content": "code {code}, {minutes} min {{literal}}", "defaults": {"minutes": "5"}},
        {"content": "code {code:>6}"},
        {
            "content": "code {code}",
            "defaults": {"minutes": "5"},
            "providers": {"rl": {"template_id": "1", "params": ["code", "minutes"]}},
        },
        # A template-only scene: its params come from each message.
        {"content": None, "providers": {"rl": {"template_id": "1", "params": ["code"]}}},
    ],
)
def test_good_templates_still_load(template: dict[str, Any]) -> None:
    load(template)


def test_check_config_catches_a_broken_template(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text(
        '[providers.bf]\ntype = "baofoo"\nbase_url = "http://127.0.0.1:1"\n'
        'user_name = "u"\nuser_pass = "p"\n\n'
        '[templates.login_code]\ncontent = "code {0}"\n',
        encoding="utf-8",
    )
    run = subprocess.run(
        [sys.executable, "-m", "router", "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "templates.login_code.content" in run.stderr


@pytest.mark.parametrize(
    ("provider", "options", "key"),
    [
        ("rl", {"template_idd": "1"}, "template_idd"),  # a typo must not drop the provider
        ("rl", {"template_id": "1", "params": "code"}, "params"),
        ("rl", {"template_id": "1", "aproved": False}, "aproved"),
        ("bf", {"send_type": 4}, "send_type"),  # the document's enum is 1-3
        ("bf", {"send_type": 0}, "send_type"),
        ("bf", {"business_type": 5}, "business_type"),  # 1-4
        ("bf", {"business_type": "notice"}, "business_type"),
        ("bf", {"sendtype": 1}, "sendtype"),
        ("bf", {"template_id": "1"}, "template_id"),  # Ronglian's option on Baofoo
    ],
)
def test_provider_options_are_checked_against_the_adapter(
    provider: str, options: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load({"content": "code {code}", "providers": {provider: options}})
    assert info.value.key == f"templates.login_code.providers.{provider}.{key}"
    assert "options: [" in info.value.problem  # names what the adapter does take


def test_valid_provider_options_load() -> None:
    load(
        {
            "content": "code {code}",
            "providers": {
                "bf": {"send_type": 1, "business_type": 4, "approved": True},
                "rl": {"template_id": 123, "params": ["code"]},
            },
        }
    )
