"""The `agentd` command: a thin click client. Heavy libraries are imported inside commands, never here."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import DISTRIBUTION, __version__
from ..errors import AgentdError


class Group(click.Group):
    """Turns agentd's named errors into a one-line message and the documented exit code; mounts the plugins'
    commands only when a command it lacks is asked for, or the list is shown (loading the config and plugins
    costs more than most core commands). ``--help`` lists them from a cache while it is current
    (agentd.cli.listing)."""

    plugin_commands: Any = None  # set by commands.mount: adds the plugins' commands to this group
    _listing: dict[str, click.Command] | None = None  # the plugins' commands as cached, while --help lists

    def _with_plugins(self) -> None:
        mount, self.plugin_commands = self.plugin_commands, None
        if mount is None:
            return
        from ..home import resolve_home
        from . import listing

        home = resolve_home()
        before, known = listing.key(home), set(self.commands)
        depends = mount(self)
        if depends is not None:
            listing.store(home, before, [c for n, c in self.commands.items() if n not in known], depends)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and self._listing is not None:
            return self._listing.get(cmd_name)
        if command is None and self.plugin_commands is not None:
            self._with_plugins()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        if self._listing is not None:
            return sorted({*self.commands, *self._listing})
        self._with_plugins()
        return super().list_commands(ctx)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.plugin_commands is not None:
            from ..home import resolve_home
            from . import listing

            self._listing = listing.cached(resolve_home())
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AgentdError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except (KeyboardInterrupt, click.exceptions.Abort):
            click.secho("interrupted", fg="yellow", err=True)  # before any run was stored, or after it ended
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, package_name=DISTRIBUTION, message="agentd %(version)s (%(package)s)")
def cli() -> None:
    """agentd: reach goals with a plan → critique → act → feedback loop over local or API models."""


@cli.command()
@click.argument("text", required=False)
@click.option("--continue", "continues", is_flag=False, flag_value="last", metavar="[RUN_ID|last]",
              help="Follow up a run (default: the last one): its workspace, its thread, its goal and answer in view.")
@click.option("--model", help="Model name from the config (see `agentd models list`).")
@click.option("--max-steps", type=click.IntRange(1), help="Most tool calls this run may make.")
@click.option("--max-replans", type=click.IntRange(0), help="Most times the plan may be redone.")
@click.option("--max-tokens", type=click.IntRange(100), help="Token budget for the whole run.")
@click.option("--timeout", "max_seconds", type=click.FloatRange(1), help="Wall-clock budget in seconds.")
@click.option("--profile", help="Loop profile from [profiles] (tiny, small, large, ...); default: by model size.")
@click.option("--no-memory", is_flag=True, help="Neither recall nor store memories for this run.")
@click.option("--dir", "dirs", multiple=True, metavar="PATH[:ro|:rw]",
              help="Attach a folder of yours (repeat); read-only unless :rw. Tools see it as NAME/...")
@click.option("--no-undo", is_flag=True, help="Keep no copies of files changed in :rw folders (no `runs undo`).")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line; the last line is the outcome.")
@click.option("--detach", is_flag=True, help="With a daemon running: print the run id and return at once.")
def goal(text: str | None, as_json: bool, detach: bool, **options: Any) -> None:
    """Reach a goal; shows plan, critique, tool calls and the answer as they happen.

    Exit codes: 0 succeeded, 1 failed or gave up, 2 usage or config error, 3 stopped by a budget,
    4 awaiting approval, 5 lost the daemon while following (the run may still be going), 130 cancelled.
    """
    from .goals import run_goal, split_continue

    text, options["continues"] = split_continue(text, options.get("continues"))
    sys.exit(run_goal(text, options, as_json=as_json, detach=detach))


def main() -> None:
    cli(prog_name="agentd")  # also under `python -m agentd`: usage lines and completion use the command's name


def _mount() -> None:
    from .commands import mount

    mount(cli)


_mount()


if __name__ == "__main__":  # pragma: no cover
    main()
