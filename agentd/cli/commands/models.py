"""`agentd models`: the configured models, GGUF files found on disk, adding one, and what a model runs with."""

from __future__ import annotations

import json
from typing import Any

import click


@click.group()
def models() -> None:
    """Configured models, GGUF files found on disk, and the loop profile each gets."""


def _configured(config: Any) -> list[dict[str, Any]]:
    from ...models.registry import model_file

    rows = []
    for name, m in config.models.items():
        where = str(model_file(m) or "bundled model missing") if m.provider == "llamacpp" else ""
        where = where or m.base_url or m.script
        rows.append({"name": name, "provider": m.provider, "default": name == config.default_model, "where": where})
    return rows


@models.command("list")
@click.option("--all", "everywhere", is_flag=True,
              help="Also search the Hugging Face cache, LM Studio and Ollama, not only model_dirs.")
@click.option("--json", "as_json", is_flag=True)
def models_list(everywhere: bool, as_json: bool) -> None:
    """The configured models (default marked) and GGUF files found: in model_dirs, or with --all everywhere."""
    from ...config import load_config
    from ...models.discovery import discover
    from ...models.entries import known_file

    config = load_config()
    rows = _configured(config)
    found = discover(config, everywhere=everywhere)
    if as_json:
        items = [f.to_dict() | {"configured_as": known_file(config, f.path)} for f in found]
        click.echo(json.dumps({"models": rows, "found": items}, indent=1))
        return
    for r in rows:
        click.echo(f"{'*' if r['default'] else ' '} {r['name']:<12} {r['provider']:<9} {r['where']}")
    for f in found:
        if f.problem:
            click.echo(f"  found: {f.id}  [unusable: {f.problem}]")
            continue
        meta = f.info.summary() if f.info else {}
        facts = ", ".join(str(x) for x in (meta.get("architecture"), meta.get("size_label") or
                                           f"{meta.get('parameters', 0) / 1e9:.2f}B", meta.get("quantization"),
                                           f"ctx {meta.get('context_length')}") if x)
        name = known_file(config, f.path)
        click.echo(f"  found: {f.id}  ({facts})" + (f"  = {name}" if name else ""))


@models.command("add")
@click.argument("name")
@click.argument("ref", metavar="PATH_OR_ID_OR_URL")
@click.option("--model", "server_model", help="With a server URL: which of its /v1/models to use.")
@click.option("--profile", help="A loop profile from [profiles] instead of the one the model's size picks.")
@click.option("--params-b", type=click.FloatRange(min=0, min_open=True),
              help="The model's size in billions of parameters (for API models; a GGUF says it itself).")
def models_add(name: str, ref: str, server_model: str | None, profile: str | None, params_b: float | None) -> None:
    """Add [models.NAME] to the config for a .gguf file, a model `models list --all` found (its id), or a
    running OpenAI-compatible server (e.g. http://127.0.0.1:11434 for Ollama). Then: agentd goal --model NAME."""
    from ...config import load_config
    from ...models.entries import add_model

    config = load_config()
    table = add_model(config, name, ref, model=server_model, profile=profile, params_b=params_b)
    where = table.get("path") or f"{table.get('model')} at {table.get('base_url')}"
    click.echo(f"added [models.{name}] to {config.config_file}: {table['provider']}, {where}")
    click.echo(f"try it: agentd goal --model {name} \"...\"   (details: agentd models info {name})")


@models.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def models_info(name: str, as_json: bool) -> None:
    """A configured model's settings, its GGUF metadata, its context size and the loop profile that applies."""
    from ...config import load_config
    from ...models.entries import describe

    data = describe(load_config(), name)
    if as_json:
        click.echo(json.dumps(data, indent=1))
        return
    profile = data.pop("profile")
    meta = data.pop("metadata", {})
    template = data.pop("chat_template", None)
    if "n_ctx" in data:
        data["n_ctx"] = f"{data['n_ctx']} ({data.pop('n_ctx_source')})"
    for key, value in data.items():
        click.echo(f"{key}: {value}")
    if meta:
        click.echo("metadata (GGUF header):")
    for key, value in meta.items():
        click.echo(f"  {key}: {value}")
    if template is not None:
        first = template.strip().splitlines()[0] if template.strip() else ""
        click.echo(f"chat template (from the file, {len(template)} chars): {first[:100]}")
    settings = ", ".join(f"{k}={v}" for k, v in profile["settings"].items()) or "the [loop] settings as they are"
    click.echo(f"profile: {profile['name']} ({profile['reason']}): {settings}")
