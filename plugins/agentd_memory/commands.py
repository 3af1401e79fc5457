"""``agentd memory``: ingest, search, list, forget, stats and reindex long-term memory.

Only click and rich are imported here; the config, chromadb and the embedding model load inside the commands.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

KINDS = ("document", "episode", "note")


@functools.cache
def _console(stderr: bool = False) -> Any:
    """rich, loaded when a command prints: mounting these commands (every `agentd --help`) must stay cheap."""
    from rich.console import Console

    return Console(stderr=stderr)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn agentd's errors into a one-line message and the error's exit code (2: config, 1: the rest)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from agentd.errors import AgentdError

        try:
            return fn(*args, **kwargs)
        except AgentdError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def _open(check: bool = True) -> Any:
    from agentd.config import load_config
    from agentd.errors import ConfigError
    from agentd_memory.store import Memory

    config = load_config()
    memory = Memory.from_config(config, check=check)
    if not memory.settings.enabled:
        raise ConfigError(
            "memory is disabled ([plugins.memory] enabled = false); enable it to use these commands"
        )
    return memory


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, default=str))


@click.group("memory")
def memory() -> None:
    """Long-term memory: documents, notes and past runs, searched by meaning."""


@memory.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--scope", default="global", show_default=True, help="global, schedule:NAME or run:ID")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@_handled
def ingest(paths: tuple[str, ...], scope: str, as_json: bool) -> None:
    """Store text files, folders (recursively), PDFs and .gz text; unchanged files are skipped, changed ones
    replaced. With a daemon running, the daemon's process does it (the store it holds has one writer)."""
    from agentd.config import load_config

    config = load_config()
    data = _ingest_in_daemon(config, paths, scope) if _daemon_running(config) else _ingest_here(paths, scope, as_json)
    if as_json:
        _dump(data)
        return
    for path, reason in data["skipped"]:
        click.echo(f"skipped {path}: {reason.removeprefix('skipped: ')}", err=True)
    _console().print(
        f"{len(data['added'])} added, {len(data['replaced'])} replaced, {len(data['unchanged'])} unchanged, "
        f"{len(data['skipped'])} skipped; {data['chunks']} chunks in {data['seconds']:.1f}s"
    )


def _daemon_running(config: Any) -> bool:
    try:
        from agentd.daemon import client
    except ImportError:
        return False
    return bool(client.daemon_running(config))


def _ingest_in_daemon(config: Any, paths: tuple[str, ...], scope: str) -> dict[str, Any]:
    from pathlib import Path

    from agentd.daemon import client

    _console(stderr=True).print("ingesting in the running daemon (it holds the memory store)")
    body = {"paths": [str(Path(p).resolve()) for p in paths], "scope": scope}
    result: dict[str, Any] = client.request(config, "POST", "/memory/ingest", json=body, timeout=None)
    return result


def _ingest_here(paths: tuple[str, ...], scope: str, as_json: bool) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agentd_memory.store import expand_paths

    mem = _open()
    files = list(expand_paths(paths))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[chunks]} chunks"),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        disable=as_json,
    ) as progress:
        task = progress.add_task("ingesting", total=len(files), chunks=0)
        counted = {"chunks": 0}

        def on_file(path: str, status: str, chunks: int) -> None:
            counted["chunks"] += chunks
            progress.update(task, advance=1, chunks=counted["chunks"], description=f"{status[:9]:<9}")

        report = mem.ingest(files, scope=scope, on_file=on_file)
    return report.to_dict()


@memory.command()
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 100), help="how many hits")
@click.option("--kind", type=click.Choice(KINDS), help="only this kind of memory")
@click.option(
    "--scope", "scopes", multiple=True, help="only these scopes (repeatable): global, schedule:NAME, run:ID"
)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per hit")
@_handled
def search(query: str, k: int, kind: str | None, scopes: tuple[str, ...], as_json: bool) -> None:
    """Find the memories closest in meaning to QUERY, with score and provenance. With a daemon running, its
    process answers (its store and embedding model are loaded already)."""
    from agentd.config import load_config

    config = load_config()
    if _daemon_running(config):
        from agentd.daemon import client

        body = {"query": query, "k": k, "kind": kind, "scopes": list(scopes) or None}
        hits: list[dict[str, Any]] = client.request(config, "POST", "/memory/search", json=body)
    else:
        hits = [hit.to_dict() for hit in _open().search(query, k=k, kind=kind, scopes=list(scopes) or None)]
    if as_json:
        for hit in hits:
            _dump(hit)
        return
    if not hits:
        click.echo("no memories found")
        return
    for rank, hit in enumerate(hits, 1):
        click.secho(f"{rank}. {hit['score']:.3f} {hit['kind']:<8} {hit['provenance']}  ({hit['id']})", bold=True)
        click.echo(f"   {_preview(hit['text'], 300, markup=False)}")


@memory.command("list")
@click.option("--kind", type=click.Choice(KINDS), help="only this kind of memory")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="one JSON object per item")
@_handled
def list_(kind: str | None, limit: int, as_json: bool) -> None:
    """List memories, newest first (one line per ingested document)."""
    items = _open().list(kind=kind, limit=limit)
    if as_json:
        for item in items:
            _dump(item.to_dict())
        return
    from agentd.cli.render import print_table

    rows = []
    for item in items:
        where = item.provenance
        if item.kind == "document":
            where = f"{item.meta.get('source')} ({item.meta.get('n_chunks', '?')} chunks)"
        rows.append([item.id, item.kind, where, _preview(item.text, 80, markup=False)])
    if items:
        print_table(["id", "kind", "from", "text"], rows, prose=("text",))
    else:
        click.echo("memory is empty")


@memory.command()
@click.argument("id", required=False)
@click.option(
    "--source", type=click.Path(), help="forget every chunk of this file (or of the files under a folder)"
)
@click.option("--run", "run", help="forget the episode and notes of this run")
@_handled
def forget(id: str | None, source: str | None, run: str | None) -> None:
    """Forget one memory by ID, a document by --source PATH, or what a run stored by --run RUN_ID."""
    if sum(x is not None for x in (id, source, run)) != 1:
        raise click.UsageError("give exactly one of: ID, --source PATH, --run RUN_ID")
    removed = _open().forget(id=id, source=source, run=run)
    click.echo(f"forgot {removed} item{'s' if removed != 1 else ''}")
    if not removed:
        sys.exit(1)


@memory.command()
@click.option("--json", "as_json", is_flag=True)
@_handled
def stats(as_json: bool) -> None:
    """Items per collection, the embedding model, where memory lives and its size on disk."""
    data = _open().stats()
    if as_json:
        _dump(data)
        return
    from rich.table import Table

    table = Table("", "")
    for key, value in data.items():
        if key == "collections":
            value = ", ".join(f"{name}: {count}" for name, count in value.items())
        elif key == "disk_bytes":
            key, value = "disk", f"{value / 1e6:.1f} MB"
        table.add_row(key, escape(str(value)))
    _console().print(table)


@memory.command()
@_handled
def reindex() -> None:
    """Re-embed every stored memory with the configured embedding model (after changing it)."""
    mem = _open(check=False)
    done = mem.reindex(on_progress=lambda name, n, total: click.echo(f"{name}: {n}/{total}", err=True))
    for name, count in done.items():
        click.echo(f"{name}: {'already up to date' if count is None else f're-embedded {count} items'}")
    click.echo(f"embedding model: {mem.embedder.model_id}")


def _preview(text: str, limit: int, markup: bool = True) -> str:
    flat = " ".join(text.split())
    flat = flat if len(flat) <= limit else flat[: limit - 3] + "..."
    return escape(flat) if markup else flat
