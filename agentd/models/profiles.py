"""Model profiles: which loop settings a run gets, chosen from the model's size.

The loop's defaults (three plan steps, the planned tool only, grounded paths, six worked examples) exist for the
bundled 135M model. A profile (``[profiles.NAME]`` in the config) replaces some of those [loop] settings for a
size class. Which one applies, first match wins: the goal's ``profile``, the model's ``profile``, the model's
size (``params_b`` as declared, else the GGUF's parameter count) against each profile's ``below_params_b``; a
model of unknown size (an API model that declares nothing) gets the smallest profile: [loop] as configured, so
an existing config behaves as before until it says more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config import Config, LoopConfig, ModelConfig
from ..errors import ConfigError
from .gguf import GGUFError, read_gguf
from .registry import model_file


@dataclass
class ProfileChoice:
    """The profile a run gets and why."""

    name: str
    reason: str
    params_b: float | None = None  # the model's size in billions, when known

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "reason": self.reason, "params_b": self.params_b}


def model_size_b(model: ModelConfig) -> tuple[float | None, str]:
    """The model's parameters in billions and where that figure comes from; (None, "") when unknown."""
    if model.params_b:
        return model.params_b, "declared params_b"
    if model.provider == "llamacpp":
        path = model_file(model)
        if path is not None:
            try:
                return read_gguf(path).params_b, "GGUF metadata"
            except GGUFError:
                return None, ""  # the provider reports the broken file when it loads it
    return None, ""


def _bound(config: Config, name: str) -> float:
    return config.profiles[name].below_params_b or math.inf


def profile_for_size(config: Config, params_b: float) -> str:
    """The profile with the smallest ``below_params_b`` above the size (an unbounded one last)."""
    for name in sorted(config.profiles, key=lambda n: (_bound(config, n), n)):
        if params_b < _bound(config, name):
            return name
    raise ConfigError("no profile takes models this large: give one profile below_params_b = 0 (no bound)")


def choose_profile(config: Config, model_name: str | None, goal_profile: str | None = None) -> ProfileChoice:
    """The profile a goal on this model runs under; ConfigError for a profile name the config lacks."""
    _, model = config.model_config_for(model_name)
    size, source = model_size_b(model)
    if goal_profile:
        choice = ProfileChoice(goal_profile, "named for this goal", size)
    elif model.profile:
        choice = ProfileChoice(model.profile, "set for this model (profile)", size)
    elif size is not None:
        choice = ProfileChoice(profile_for_size(config, size), f"{_size_text(size)} parameters ({source})", size)
    else:
        smallest = min(config.profiles, key=lambda n: (_bound(config, n), n))
        choice = ProfileChoice(smallest, f"size unknown for a {model.provider} model (set params_b or profile)")
    if choice.name not in config.profiles:
        raise ConfigError(
            f"unknown profile {choice.name!r}; profiles: {', '.join(sorted(config.profiles))} "
            "(configs/agentd.toml [profiles.NAME])"
        )
    return choice


def loop_settings(config: Config, profile: str) -> LoopConfig:
    """[loop] with the profile's settings applied."""
    if profile not in config.profiles:
        raise ConfigError(f"unknown profile {profile!r}; profiles: {', '.join(sorted(config.profiles))}")
    return config.loop.model_copy(update=config.profiles[profile].loop_settings())


def _size_text(params_b: float) -> str:
    return f"{params_b:.1f}B" if params_b >= 1 else f"{params_b * 1000:.0f}M"
