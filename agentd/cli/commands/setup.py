"""`agentd completion` and `agentd keys`: setting up a shell and credentials."""

from __future__ import annotations

import sys

import click

_HOW = {
    "bash": 'eval "$(agentd completion bash)"   # in ~/.bashrc',
    "zsh": 'eval "$(agentd completion zsh)"    # in ~/.zshrc',
    "fish": "agentd completion fish > ~/.config/fish/completions/agentd.fish",
}


@click.command()
@click.argument("shell", type=click.Choice(sorted(_HOW)))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the tab-completion script for SHELL (commands, options, choices)."""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # click ships all three
    root = ctx.find_root().command
    click.echo(f"# agentd completion for {shell}; enable it with:  {_HOW[shell]}")
    click.echo(complete(root, {}, "agentd", "_AGENTD_COMPLETE").source())


@click.group()
def keys() -> None:
    """API keys in an owner-only file, used when the environment variable of that name is not set."""


@keys.command("set")
@click.argument("name")
@click.option("--value", help="The key (default: asked for without echo, or read from stdin when piped).")
def keys_set(name: str, value: str | None) -> None:
    """Store the key for variable NAME, e.g. `agentd keys set OPENAI_API_KEY`."""
    from ...keys import store_key

    if value is None:
        value = sys.stdin.readline() if not sys.stdin.isatty() else click.prompt(f"{name}", hide_input=True)
    path = store_key(name, value)
    click.echo(f"stored {name} in {path} (readable by you only); ${name}, when set, still wins")


@keys.command("list")
def keys_list() -> None:
    """The names of the stored keys (never their values), and whether the variable overrides each."""
    import os

    from ...keys import keys_path, stored_keys

    names = sorted(stored_keys())
    if not names:
        click.echo(f"no keys stored ({keys_path()})")
    for name in names:
        click.echo(f"{name}" + ("  (overridden: the variable is set)" if os.environ.get(name) else ""))


@keys.command("remove")
@click.argument("name")
def keys_remove(name: str) -> None:
    """Forget the stored key NAME."""
    from ...errors import ConfigError
    from ...keys import remove_key

    if not remove_key(name):
        raise ConfigError(f"no stored key {name!r}; `agentd keys list` shows the names")
    click.echo(f"removed {name}")
