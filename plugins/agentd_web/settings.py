"""The ``[plugins.web]`` settings: one pydantic model, validated at the edge, with errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SECTION = "plugins.web"

# Cloud metadata services live on link-local addresses (169.254.169.254, AWS's fd00:ec2::254); they stay
# refused even when allow_private is switched on for a LAN, unless the user edits this list.
DEFAULT_DENY = ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"]


class WebSettingsError(ValueError):
    """The ``[plugins.web]`` table is invalid; the message names each offending key."""


class WebSettings(BaseModel):
    """Every knob of the web plugin, with the defaults documented in configs/agentd.toml."""

    model_config = ConfigDict(extra="forbid")

    # Search.
    search_backend: str = "ddgs"
    max_results_limit: int = Field(10, ge=1, le=50)
    searxng_url: str = ""
    brave_api_key: str = ""
    brave_api_key_env: str = "BRAVE_API_KEY"
    tavily_api_key: str = ""
    tavily_api_key_env: str = "TAVILY_API_KEY"
    ddgs_backend: str = "auto"
    ddgs_region: str = "us-en"
    safesearch: Literal["off", "moderate", "strict"] = "moderate"
    backend_plugins: list[str] = Field(default_factory=list)
    backends: dict[str, dict[str, Any]] = Field(default_factory=dict)  # third-party backends' own tables
    max_retry_wait_s: float = Field(3.0, ge=0)
    # Fetching.
    timeout_s: float = Field(15.0, gt=0)
    max_bytes: int = Field(2_000_000, ge=1024)
    max_chars: int = Field(20_000, ge=200)
    max_redirects: int = Field(5, ge=0, le=30)
    user_agent: str = "agentd-web/0.1"
    # Address policy.
    allow_private: bool = False
    deny: list[str] = Field(default_factory=lambda: list(DEFAULT_DENY))
    http_allow_hosts: list[str] = Field(default_factory=list)
    # Cache.
    cache_ttl_s: float = Field(3600.0, ge=0)
    cache_dir: str = ""

    def resolved_cache_dir(self, home: Path) -> Path:
        """``cache_dir`` (relative paths are under AGENTD_HOME), default ``<home>/cache/web``."""
        if not self.cache_dir:
            return Path(home) / "cache" / "web"
        path = Path(self.cache_dir).expanduser()
        return path if path.is_absolute() else Path(home) / path


def load_settings(raw: dict | None) -> WebSettings:
    """Validate the raw ``[plugins.web]`` table; raise WebSettingsError naming every bad key."""
    try:
        return WebSettings.model_validate(raw or {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"{SECTION}.{key}: unknown key (see docs/web.md for the keys)")
            else:
                problems.append(f"{SECTION}.{key}: {err['msg']} (got {err.get('input')!r})")
        raise WebSettingsError("invalid configuration: " + "; ".join(problems)) from None
