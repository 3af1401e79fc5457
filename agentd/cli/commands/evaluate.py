"""`agentd eval`: run goal suites in fresh homes and print right, false successes, model calls, tokens, time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command("eval")
@click.argument("suites", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", help="Model name from the config (see `agentd models list`); default: the default model.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1), help="Run every case N times.")
@click.option("--only", help="Run only the cases whose id contains this text.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A config override for this evaluation, e.g. --set loop.feedback=model (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print every result and the totals as one JSON object.")
def evaluate(suites: tuple[Path, ...], model: str | None, repeat: int, only: str | None, settings: tuple[str, ...],
             as_json: bool) -> None:
    """Run each goal of SUITE.jsonl files in a fresh home and check it from outside.

    Prints a table and totals: right, claimed successes, false successes (succeeded but wrong), steps, model
    calls, tokens and seconds; with several suites, totals per suite too. Exit code 1 when any false success.
    """
    from ...config import load_config
    from ...errors import ConfigError
    from ...evaluation import load_suite, run_case, summary

    overrides = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set loop.feedback=model")
        overrides[key.strip()] = _value(value.strip())
    config = load_config(overrides=overrides)
    config.model_config_for(model)
    try:
        cases = [c for path in suites for c in load_suite(path) if not only or only in c.id]
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    results = []
    for case in cases:
        for _ in range(repeat):
            result = run_case(case, config, model)
            results.append(result)
            mark = "ok" if result.right else ("FALSE SUCCESS" if result.false_success else "wrong")
            click.echo(f"{case.id}: {mark} ({result.status}, {result.model_calls} calls, {result.seconds:.1f}s)"
                       + (f"  {'; '.join(result.problems)}" if result.problems else ""), err=True)
    report = summary(results)
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        _print(report)
    sys.exit(1 if report["totals"]["false_successes"] else 0)


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _print(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("case", "status", "verified", "right", "steps", "calls", "tokens", "s", "problems")
    for r in report["results"]:
        right = "[green]yes[/]" if r["right"] else ("[red]FALSE SUCCESS[/]" if r["false_success"] else "no")
        verified = {True: "yes", False: "no"}.get(r["verified"], "-")
        table.add_row(r["case"], r["status"], verified, right, str(r["steps"]), str(r["model_calls"]),
                      str(r["tokens"]), f"{r['seconds']:.1f}", "; ".join(r["problems"])[:80])
    console = Console()
    console.print(table)
    rows = [("all", report["totals"])] + (list(report["by_suite"].items()) if len(report["by_suite"]) > 1 else [])
    for name, t in rows:
        console.print(
            f"[bold]{name}[/]: {t['right']}/{t['runs']} right, {t['claimed_success']} claimed success, "
            f"[bold]{t['false_successes']} false successes[/] ({t['unverified_successes']} unverified), "
            f"{t['steps_per_goal']} steps and {t['model_calls_per_goal']} model calls per goal, "
            f"{t['tokens']} tokens, {t['seconds']}s"
        )
