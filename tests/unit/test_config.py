"""Config: documented defaults, the file, env overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from agentd.config import Config, load_config, resolve_home
from agentd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(home: Path, text: str) -> None:
    (home / "configs").mkdir(parents=True, exist_ok=True)
    (home / "configs" / "agentd.toml").write_text(text)


def test_documented_defaults_match_the_code():
    """configs/agentd.toml documents every core key with its real default."""
    documented = tomllib.loads((REPO / "configs" / "agentd.toml").read_text())
    defaults = Config().model_dump(mode="json")
    for section in ("loop",):
        assert documented[section] == defaults[section]
    assert documented["models"]["local"] == defaults["models"]["local"]
    assert documented["default_model"] == defaults["default_model"]
    for key in Config.model_fields:
        assert key == "home" or key in documented or key == "plugins", f"{key} is not documented"
    for key in type(Config().loop).model_fields:
        assert key in documented["loop"], f"loop.{key} is not documented"


def test_the_checkout_config_loads(tmp_path):
    config = load_config(home=REPO, env={})
    assert config.loop.max_steps == 8 and config.default_model == "local"


def test_unknown_key_is_named(tmp_path):
    write(tmp_path, "[loop]\nmax_stpes = 3\n")
    with pytest.raises(ConfigError, match=r"loop\.max_stpes: unknown key"):
        load_config(home=tmp_path, env={})


def test_bad_value_is_named(tmp_path):
    write(tmp_path, "[loop]\nmax_steps = 'many'\n")
    with pytest.raises(ConfigError, match=r"loop\.max_steps: .*integer.*'many'"):
        load_config(home=tmp_path, env={})


def test_invalid_toml_is_reported_with_the_file(tmp_path):
    write(tmp_path, "[loop\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(home=tmp_path, env={})


def test_env_overrides_parse_toml_literals(tmp_path):
    config = load_config(home=tmp_path, env={"AGENTD_LOOP__MAX_STEPS": "3", "AGENTD_LOOP__CRITIC": "both"})
    assert config.loop.max_steps == 3 and config.loop.critic == "both"


def test_default_model_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="default_model = 'big'"):
        load_config(home=tmp_path, env={"AGENTD_MODEL": "big"})


def test_unknown_model_name_lists_the_known_ones(tmp_path):
    config = load_config(home=tmp_path, env={})
    with pytest.raises(ConfigError, match="unknown model 'gpt9'.*local"):
        config.model_config_for("gpt9")


def test_plugin_settings_and_allowlist_from_env(tmp_path):
    write(tmp_path, "[plugins.web]\nallow_private = true\n")
    config = load_config(home=tmp_path, env={"AGENTD_LOAD_PLUGINS": "workspace, code"})
    assert config.plugin_settings("web") == {"allow_private": True}
    assert config.plugin_settings("nothing") == {}
    assert config.plugins.load == ["workspace", "code"]


def test_home_resolution(tmp_path):
    assert resolve_home({"AGENTD_HOME": str(tmp_path)}) == tmp_path.resolve()
    assert resolve_home({}, cwd=REPO) == REPO.resolve()  # a checkout is a home
    assert resolve_home({}, cwd=tmp_path).name == "agentd"  # elsewhere: ~/.local/share/agentd
