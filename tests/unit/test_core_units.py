"""Journal, structured-output parsing, tool schemas, and the CLI's import weight."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agentd import Goal, ToolResult
from agentd.engine.structured import Invalid, extract_json
from agentd.journal import MIGRATIONS, Journal, JournalError
from agentd.tools import Tool, ToolContext, ToolError, execute, resolve_in_workspace


def test_journal_migrations_are_recorded_once(journal_url):
    Journal(journal_url).close()
    journal = Journal(journal_url)
    assert journal.migrations() == sorted(m.__name__ for m in MIGRATIONS)
    if journal.dialect == "sqlite":
        assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


READ_ONLY = {  # stands in for a full or read-only disk
    "sqlite": ("PRAGMA query_only = ON", "PRAGMA query_only = OFF"),
    "postgresql": ("SET default_transaction_read_only = on", "SET default_transaction_read_only = off"),
}


def test_journal_write_failure_is_a_clear_error(journal_url, tmp_path):
    journal = Journal(journal_url)
    read_only, writable = READ_ONLY[journal.dialect]
    journal._db.execute(read_only)
    with pytest.raises(JournalError, match="journal write failed"):
        journal.create_run(Goal(text="x"), tmp_path, "local")
    journal._db.execute(writable)
    assert journal.list_runs() == []  # nothing half-written


def test_run_ids_resolve_by_unique_prefix(journal_url, tmp_path):
    journal = Journal(journal_url)
    run_id = journal.create_run(Goal(text="x"), tmp_path, "local", run_id="20260101-000000-abcdef")
    assert journal.get_run("20260101-000000-ab")["id"] == run_id
    assert journal.get_run("nope") is None


@pytest.mark.parametrize(
    ("text", "value", "repaired"),
    [
        ('{"a": 1}', {"a": 1}, False),
        ('```json\n{"a": 1}\n```', {"a": 1}, False),
        ('Sure! {"a": 1, "b": [1, 2', {"a": 1, "b": [1, 2]}, True),
        ("{'a': 1,}", {"a": 1}, True),
    ],
)
def test_extract_json_parses_and_repairs(text, value, repaired):
    assert extract_json(text) == (value, repaired)


def test_extract_json_refuses_prose():
    with pytest.raises(Invalid, match="no JSON"):
        extract_json("I would write the file.")


def test_tool_schema_comes_from_the_signature():
    def greet(name: str, times: int = 1, ctx: ToolContext | None = None) -> str:
        """Greet someone.

        More text that is not part of the description."""
        return "hi " * times + name

    tool = Tool.from_function(greet, side_effects=["reads_files"])
    assert tool.description == "Greet someone."
    assert tool.parameters["required"] == ["name"]
    assert set(tool.parameters["properties"]) == {"name", "times"}  # ctx is hidden from the model
    assert tool.wants_ctx
    with pytest.raises(ToolError, match="times"):
        tool.validate({"name": "a", "times": "lots"})
    with pytest.raises(ValueError, match="unknown side effects"):
        Tool.from_function(greet, side_effects=["teleports"])


def test_execute_turns_exceptions_and_bad_args_into_errors(tmp_path):
    def fails(x: int) -> str:
        """Fails."""
        raise KeyError(x)

    tool = Tool.from_function(fails)
    ctx = ToolContext(run_id="r", workspace=tmp_path)
    assert execute(tool, {"x": 1}, ctx).error == "KeyError: 1"
    assert "invalid arguments" in execute(tool, {}, ctx).error
    assert isinstance(execute(Tool.from_function(lambda: "ok", name="ok"), {}, ctx), ToolResult)


def test_workspace_confinement(tmp_path):
    (tmp_path / "outside").mkdir()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "link").symlink_to(tmp_path / "outside")
    assert resolve_in_workspace(ws, "a/b.txt") == (ws / "a" / "b.txt").resolve()
    for bad in ("../x", "/etc/passwd", "link/secret", ""):
        with pytest.raises(ToolError):
            resolve_in_workspace(ws, bad)


def test_cli_import_is_light():
    code = (
        "import sys, agentd.cli\n"
        "heavy = [m for m in ('langchain_core', 'langchain_community', 'llama_cpp', 'chromadb', 'torch',"
        " 'diffusers', 'fastapi', 'httpx') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_long_transcripts_are_trimmed_to_the_context_budget(tmp_path):
    from agentd.engine import phases
    from agentd.tools import ToolRegistry

    tools = ToolRegistry()
    transcript = [("user", "Goal: g\nWrite the plan."), ("assistant", "{}")]
    transcript += [("user" if i % 2 == 0 else "assistant", f"turn {i} " + "x" * 500) for i in range(12)]
    full = phases.messages(tools, transcript, "Write the decision.")
    budget = sum(len(t) for _, t in full) - 1500
    trimmed = phases.messages(tools, transcript, "Write the decision.", budget_chars=budget)
    assert sum(len(t) for _, t in trimmed) <= budget
    assert trimmed[1:3] == transcript[:2] and trimmed[-1] == ("user", "Write the decision.")  # goal kept
    assert trimmed[-2] == transcript[-1]  # the latest turns kept
    assert len(trimmed) % 2 == len(full) % 2  # turns leave in user/assistant pairs


def test_a_path_the_file_system_refuses_is_a_tool_error(tmp_path):
    with pytest.raises(ToolError, match="invalid path"):
        resolve_in_workspace(tmp_path, "a" * 5000)


def test_a_write_interrupted_mid_transaction_is_rolled_back_and_the_journal_stays_usable(journal_url):
    journal = Journal(journal_url)
    journal._db.begin()  # as left by a KeyboardInterrupt between BEGIN and COMMIT
    journal._db.execute("INSERT INTO events (run_id, type, data_json, ts) VALUES ('r', 'half', '{}', 0)")
    journal.add_event("r", "whole", {})
    assert [e["type"] for e in journal.events("r")] == ["whole"]

    class Interrupt(BaseException):
        pass

    with pytest.raises(Interrupt), journal._tx() as db:
        db.execute("INSERT INTO events (run_id, type, data_json, ts) VALUES ('r', 'partial', '{}', 0)")
        raise Interrupt
    assert [e["type"] for e in journal.events("r")] == ["whole"]
    journal.add_event("r", "after", {})
