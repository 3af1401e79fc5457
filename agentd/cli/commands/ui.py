"""`agentd ui`: open the dashboard in a browser through a fresh one-time login link. Imports only click here."""

from __future__ import annotations

import os
import sys

import click


@click.command()
@click.option("--no-browser", is_flag=True, help="Print the link only; do not open a browser.")
@click.pass_context
def ui(ctx: click.Context, no_browser: bool) -> None:
    """Open the web dashboard (starts the daemon first if it is not running).

    The link signs one browser in once and expires after two minutes; run `agentd ui` again for another.
    The dashboard listens on 127.0.0.1 only: from another machine, forward its port over SSH.
    """
    from ...config import load_config
    from ...daemon import client
    from .daemon import start

    config = load_config()
    if not client.daemon_running(config):
        ctx.invoke(start)
    data = client.request(config, "POST", "/ui/session")
    url = str(data["url"])
    click.echo(url)
    if no_browser or not _has_browser():
        click.echo("open that link in a browser on this machine (it works once)", err=True)
        return
    import webbrowser

    if not webbrowser.open(url):
        click.echo("could not open a browser: open the link above yourself", err=True)


def _has_browser() -> bool:
    """A graphical browser can open here (a text browser would take over the terminal)."""
    if os.environ.get("BROWSER"):
        return True
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
