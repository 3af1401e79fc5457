"""`agentd.langchain.tools.from_langchain` and the config route of the built-in `langchain` plugin."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from langchain_core.tools import BaseTool, ToolException, tool
from pydantic import BaseModel, Field

from agentd import ToolContext
from agentd.config import load_config
from agentd.langchain.plugin import load_entries
from agentd.langchain.tools import from_langchain
from agentd.tools import execute


@tool
def multiply(a: int, b: int = 2) -> int:
    """Multiply two whole numbers."""
    return a * b


@tool
def fragile(text: str) -> str:
    """Fails in the ways LangChain tools fail."""
    if text == "raise":
        raise ToolException("the service said no")
    if text == "crash":
        raise KeyError("boom")
    return "Error: quota exhausted, try tomorrow" if text == "quota" else text


class NoteInput(BaseModel):
    name: str = Field(description="file name of the note")


class NoteTool(BaseTool):
    """A file-ish LangChain tool: it writes wherever ``root_dir`` points."""

    name: str = "save_note"
    description: str = "Save a note file."
    args_schema: type[BaseModel] = NoteInput
    root_dir: str | None = None

    def _run(self, name: str) -> str:
        from pathlib import Path

        (Path(self.root_dir or ".") / name).write_text("note")
        return f"saved {name} in {self.root_dir}"


def ctx(tmp_path):
    return ToolContext(run_id="r", workspace=tmp_path)


def test_schema_description_and_name_come_from_the_langchain_tool():
    converted = from_langchain(multiply, side_effects=[])
    assert converted.name == "multiply" and converted.description == "Multiply two whole numbers."
    assert converted.parameters == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 2}},
        "required": ["a"],
    }
    assert from_langchain(multiply, name="times", side_effects=["costs_money"]).side_effects == ("costs_money",)


def test_calls_are_validated_by_the_args_schema_and_run_through_invoke(tmp_path):
    converted = from_langchain(multiply)
    assert execute(converted, {"a": 6, "b": 7}, ctx(tmp_path)).output == "42"
    assert execute(converted, {"a": "6"}, ctx(tmp_path)).output == "12"  # pydantic coerces like LangChain does
    bad = execute(converted, {"a": "six"}, ctx(tmp_path))
    assert bad.error.startswith("invalid arguments for multiply: a:")
    assert "required" in execute(converted, {}, ctx(tmp_path)).error.lower()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("raise", "fragile failed: ToolException: the service said no"),
        ("crash", "fragile failed: KeyError: 'boom'"),
        ("quota", "fragile: quota exhausted, try tomorrow"),
        ("fine", None),
    ],
)
def test_langchain_failures_become_tool_errors(tmp_path, text, error):
    result = execute(from_langchain(fragile), {"text": text}, ctx(tmp_path))
    assert result.error == error
    if error is None:
        assert result.output == "fine"


def test_tools_with_a_root_dir_are_confined_to_the_run_workspace(tmp_path):
    first, second = tmp_path / "run1", tmp_path / "run2"
    first.mkdir(), second.mkdir()
    converted = from_langchain(NoteTool(), side_effects=["writes_files"])
    assert "name" in converted.parameters["properties"] and "root_dir" not in converted.parameters["properties"]
    assert execute(converted, {"name": "a.txt"}, ctx(first)).output == f"saved a.txt in {first}"
    execute(converted, {"name": "b.txt"}, ctx(second))
    assert (first / "a.txt").exists() and (second / "b.txt").exists() and not (first / "b.txt").exists()
    pinned = from_langchain(NoteTool(root_dir=str(second)))
    assert execute(pinned, {"name": "c.txt"}, ctx(first)).output == f"saved c.txt in {second}"


def test_only_langchain_tools_are_accepted():
    with pytest.raises(TypeError, match="needs a langchain_core BaseTool"):
        from_langchain(lambda x: x)


def entries(tmp_path, tools):
    # Unvalidated, so entries the config would refuse at load time (42) reach load_entries' own checks.
    config = load_config(home=tmp_path, env={}, overrides={"plugins.langchain": {"tools": tools}}, validate_plugins=False)
    return load_entries(config)


def test_config_entries_build_tools_with_names_effects_and_kwargs(tmp_path):
    here = __name__
    built, problems = entries(tmp_path, [
        f"{here}.NoteTool",
        {"class": f"{here}.NoteTool", "name": "pinned_note", "side_effects": ["writes_files"],
         "kwargs": {"root_dir": str(tmp_path)}},
    ])
    assert problems == []
    assert [(t.name, t.side_effects) for t in built] == [("save_note", ("network",)), ("pinned_note", ("writes_files",))]


def test_bad_config_entries_are_reported_and_the_rest_still_load(tmp_path):
    here = __name__
    built, problems = entries(tmp_path, [
        "no_such_package.Tool", f"{here}.Missing", {"class": f"{here}.NoteTool", "colour": "red"}, 42,
        f"{here}.NoteTool",
    ])
    assert [t.name for t in built] == ["save_note"]
    assert problems[0].startswith("plugins.langchain.tools[1] (no_such_package.Tool): ModuleNotFoundError")
    assert "AttributeError" in problems[1]
    assert "unknown keys ['colour']" in problems[2]
    assert "a dotted class path or a table" in problems[3]


def test_no_langchain_import_unless_tools_are_configured(tmp_path):
    code = (
        "import sys\nfrom pathlib import Path\nfrom agentd.app import make_app\nfrom agentd.config import load_config\n"
        f"make_app(load_config(home=Path({str(tmp_path)!r}), env={{}}))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('langchain_community'))))"
    )
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_doctor_and_tools_list_report_bad_entries(home):
    from click.testing import CliRunner

    from agentd.cli import cli
    from agentd.cli.commands.system import run_checks

    script = home / "script.json"
    script.write_text('{"default": "{}"}')
    (home / "configs").mkdir()
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "scripted"\nscript = "{script}"\n\n'
        f'[plugins.langchain]\ntools = ["{__name__}.NoteTool", "{__name__}.Nope"]\n'
    )
    checks = [(name, ok, detail) for name, ok, detail in run_checks() if name.startswith("langchain")]
    assert len(checks) == 1 and checks[0][:2] == ("langchain: langchain tool", False)
    assert "AttributeError" in checks[0][2] and "fix or remove the entry" in checks[0][2]
    listed = json.loads(CliRunner().invoke(cli, ["tools", "list", "--json"]).output)
    assert [u["plugin"] for u in listed["unavailable"] if "Nope" in u["reason"]] == ["langchain"]
    assert {"name": "save_note", "side_effects": ["network"]}.items() <= next(
        t for t in listed["tools"] if t["name"] == "save_note").items()
