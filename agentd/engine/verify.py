"""Outcome verification: before a run may end ``succeeded``, its claim is checked against the journal's evidence.

The built-in checks are rules, no model call: files the goal names exist and were written by this run, a value
the goal asks for appears in an observation and in the answer (numbers a code tool printed, not its status
line), an answer to a question says more than the goal's own words, the answer names no file the run did not write and no tool it did not call, a tool the goal asks for
("in Python") was called, and the last step did not fail. They run as the ``verify_outcome`` hook (this
module is a default plugin), so other plugins add their own checks the same way.

A finding is ``contradicted`` (the evidence says the claim is wrong: the run may not succeed) or ``missing``
(nothing shows the claim is right or wrong: the run may succeed, marked ``verified: false``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..folders import folders_of, split_target
from ..hookspecs import hookimpl
from ..records import Finding
from .selection import stems

CONTRADICTED, MISSING = "contradicted", "missing"
PLUGIN_NAME = "verify"


@dataclass
class Evidence:
    """What a run's observations show: files written and read, values and numbers seen, tools called."""

    written: set[str] = field(default_factory=set)
    read: set[str] = field(default_factory=set)
    values: list[str] = field(default_factory=list)  # short answer-like results, latest last
    numbers: set[str] = field(default_factory=set)
    text: str = ""  # every successful observation's output, for word checks
    tools: set[str] = field(default_factory=set)
    measured: bool = False  # a tool ran that says which part of its output is content (data["evidence"]: code)
    last_failed: bool = False
    files_at_start: set[str] = field(default_factory=set)
    folders: list[Any] = field(default_factory=list)  # the goal's attached folders (agentd/folders.py)

    def where(self, workspace: Path, name: str) -> Path:
        """The file ``name`` names: in an attached folder when it starts with one's name, else the workspace."""
        folder, inside = split_target(self.folders, name)
        return workspace / name if folder is None else Path(folder.path) / inside

    @classmethod
    def of(cls, state: Any) -> Evidence:
        ev = cls(files_at_start=set(getattr(state, "files_at_start", []) or []),
                 folders=folders_of(getattr(state, "goal", None)))
        outputs = []
        for obs in state.observations:
            if not obs.result.ok or "final_answer" in obs.result.data:
                continue  # a failed call shows nothing; the answer tool only repeats the claim under test
            ev.tools.add(obs.call.tool)
            ev.written.update(_norm(a) for a in obs.result.artifacts)
            path = obs.call.args.get("path")
            if isinstance(path, str) and obs.call.tool != "write_file":
                ev.read.add(_norm(path))
            value = obs.result.data.get("value")
            line = obs.result.output.strip()
            if not isinstance(value, str) and isinstance(value, (int, float)) and "\n" not in line and 0 < len(line) <= 100:
                value = line  # a number with its context ("10 km = 6.214 mi") reads better than the bare float
            if isinstance(value, (str, int, float)) and str(value).strip() and len(str(value)) <= 100:
                ev.values.append(str(value).strip())
            content = obs.result.data.get("evidence")  # a tool's content without its status line ("after 0.08s")
            ev.measured = ev.measured or isinstance(content, str)
            outputs.append(content if isinstance(content, str) else obs.result.output)
        ev.text = "\n".join(outputs)
        ev.numbers = numbers(ev.text) | {n for v in ev.values for n in numbers(v)}
        steps = [o for o in state.observations if "final_answer" not in o.result.data and o.call.tool != "final_answer"]
        ev.last_failed = bool(steps) and not steps[-1].result.ok  # the answer tool after a failure proves nothing
        return ev


# -- reading goals and answers -----------------------------------------------------------------------
_URL = re.compile(r"\w+://\S+")
_FILE = re.compile(r"(?<![\w/.])([\w\-]+(?:/[\w\-.]+)*\.[A-Za-z][A-Za-z0-9]{0,7})\b")
_NOT_FILES = {"com", "org", "net", "io", "dev", "e", "g", "i", "ie", "eg", "etc"}
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_ASKS_VALUE = re.compile(
    r"\b(what is|what's|what are|compute|calculate|how many|how much|answer with|tell me|"
    r"sum of|product of|result of|which|count)\b", re.IGNORECASE)
_NUMERIC = re.compile(r"\d\s*[-+*/x×^]\s*\d|\b(how many|how much|compute|calculate|sum|product|count|number)\b",
                      re.IGNORECASE)
_LIBRARY = re.compile(r"\b(standard library|library|module|function)\b", re.IGNORECASE)


def _norm(path: str) -> str:
    return str(Path(path.strip().strip("'\"`"))).lstrip("./") if path.strip() else ""


def file_names(text: str, tools: Any = ()) -> list[str]:
    """File names mentioned in a text (``notes.txt``, ``out/a.csv``), not URLs, tool names or numbers."""
    text = _URL.sub(" ", text)
    found = []
    for match in _FILE.finditer(text):
        name = match.group(1).rstrip(".")
        ext = name.rsplit(".", 1)[-1].lower()
        if ext in _NOT_FILES or name in tools or name.replace(".", "_") in tools:
            continue
        if _norm(name) not in found:
            found.append(_norm(name))
    return found


_WRITES = re.compile(r"\b(write|writes|create|save|put|store|make|generat\w*|copy|duplicat\w*|produc\w*|append|"
                     r"export|fill|dump|named|called|into)\b", re.IGNORECASE)


def wanted_files(goal: str, tools: Any = ()) -> list[str]:
    """Files the goal asks the run to write: named after a writing verb in the same clause ("write kiwi to
    k.txt", "create three files x.txt, y.txt"), not merely mentioned ("reports go to r.md; remember that")."""
    wanted = []
    for name in file_names(goal, tools):
        at = goal.find(name)
        clause = re.split(r"[;.!?]\s", goal[:at])[-1] if at >= 0 else ""
        if _WRITES.search(" ".join(clause.split()[-12:])):
            wanted.append(name)
    return wanted


# Not "create" or "make": "Create a haiku", "Make a list of three fruits" are answered in words; "create the
# fruit file" speaks of a file, and "create notes.txt" names one.
_ACTS = re.compile(r"(?:^|[.;!?]\s+|\b(?:and|then|please|you)\s+)(save|store|put|copy|duplicate|"
                   r"export|dump|append|delete|remove|rename|move|run|execute|install|download|upload|send|email|"
                   r"remember|schedule|read|open|fetch|search|browse)\b", re.IGNORECASE)
_WORKSPACE = re.compile(r"\b(files?|folders?|director(?:y|ies)|workspace)\b", re.IGNORECASE)


def needs_tools(goal: str, tools: Any = ()) -> str:
    """Why an answer alone cannot reach the goal ("names notes.txt", "asks to save"), "" when it may: the
    goal names a file or a URL (to write, or to read: what it asks about is in there), speaks of files or the
    workspace, or asks for something to be done or looked at ("create the fruit file again", "remember that
    ...", "read it and tell me"). A question, "tell me", "calculate", "explain" may be answered."""
    named = file_names(goal, tools) or _URL.findall(goal)
    if named:
        return f"names {named[0]}"
    if act := _ACTS.search(goal.strip()):
        return f"asks to {act[1].lower()}"
    if about := _WORKSPACE.search(goal):
        return f"is about {about[1].lower()}"
    return ""


def numbers(text: str) -> set[str]:
    """Numbers in a text, normalised (``1,234.0`` → ``1234``) so that equal values compare equal."""
    found = set()
    for raw in _NUMBER.findall(text or ""):
        value = raw.replace(",", "")
        try:
            number = float(value)
        except ValueError:
            continue
        found.add(str(int(number)) if number.is_integer() else f"{number:g}")
    return found


def asks_value(goal: str) -> bool:
    return bool(_ASKS_VALUE.search(goal)) or goal.rstrip().endswith("?")


_COMMON = frozenset(
    "the and for are was were with that this from have has had not but you your its can will what which who how "  # noqa: SIM905 - reads better as words
    "all any one into than then there their they them our out about also just only some such very more most "
    "other each both does did done tell give find show read file files goal reach reached answer result "
    "step steps made make said says".split()
)


# What an answer that reports nothing says: "The goal was reached. The decision was made to reach the end."
_EMPTY = frozenset({"decis", "end", "finis", "compl", "succe", "task", "achie", "accom", "ended", "doing", "work"})


def _stems(text: str) -> set[str]:
    """The content words of a text, crudely stemmed (selection.stems), without common words."""
    return set(stems(text or "", _COMMON))


def telling_line(goal: str, ev: Evidence) -> str:
    """The observed line that best answers the goal (the one with most of the goal's words, the shortest of
    those, else the first, among lines that add a word of their own): an answer built from the evidence, for an
    answer that says nothing."""
    asked = _stems(goal)
    best, score = "", 0
    for line in ev.text.splitlines():
        line = " ".join(line.split())
        words = _stems(line)
        if not line or len(line) > 200 or not (words - asked):
            continue
        hits = len(words & asked)
        if hits > score or not best:
            best, score = line, hits
        elif hits == score and hits and len(line) < len(best):
            best = line
    return best


# -- the built-in rule checks ----------------------------------------------------------------------
def check_outcome(
    goal: str, state: Any, answer: str, workspace: Path, tool_names: Any = (), ev: Evidence | None = None
) -> list[Finding]:
    """Every rule check on one proposed answer; an empty list means verified. ``ev``: the run's evidence when
    the caller already gathered it (``Evidence.of(state)``)."""
    ev = ev if ev is not None else Evidence.of(state)
    findings = _check_files(goal, ev, workspace, tool_names)
    findings += _check_value(goal, ev, answer)
    findings += _check_answer_claims(ev, answer, workspace, tool_names)
    findings += _check_acted(goal, ev, tool_names)
    if ev.last_failed:
        findings.append(Finding("last_step", "the last step failed, so the goal is not shown to be reached"))
    return findings


def positive_evidence(
    goal: str, state: Any, workspace: Path, tool_names: Any = (), ev: Evidence | None = None
) -> bool:
    """Whether the goal asks for something checkable (files, a value) and the run's evidence shows it."""
    ev = ev if ev is not None else Evidence.of(state)
    wanted = [f for f in wanted_files(goal, tool_names) if f not in ev.files_at_start]
    if asks_value(goal) and not wanted:
        return bool(ev.values)
    return bool(wanted) and not _check_files(goal, ev, workspace, tool_names)


def _check_files(goal: str, ev: Evidence, workspace: Path, tool_names: Any) -> list[Finding]:
    findings = []
    for name in wanted_files(goal, tool_names):
        if name in ev.files_at_start or name in ev.read:
            continue  # an input the goal gives, not an output it asks for
        if not ev.where(workspace, name).exists():
            findings.append(Finding("files", f"{name} does not exist: the goal names it but no step created it"))
        elif name not in ev.written:
            findings.append(Finding("files", f"{name} exists but this run did not write it", MISSING))
        else:
            findings += _check_content(goal, name, workspace, ev.where(workspace, name))
    return findings


_VERBS = r"(?:write|put|save|store|and)"
_LITERAL = r"(?:the\s+(?:word|words|text|line|number)\s+)?['\"]?([\w\- ]{1,40}?)['\"]?"
# A description, not the text itself: "write the team report to r.md", "write the result to out.txt".
_NOT_LITERAL = re.compile(r"^(the|a|an|this|that|these|my|your|our|their)\b|"
                          r"\b(result|sum|answer|output|it|them|its|each|own|contents?|numbers|letters|of)\b", re.I)


def _check_content(goal: str, name: str, workspace: Path, path: Path | None = None) -> list[Finding]:
    """A short literal the goal says goes into the file ("write kiwi to k.txt", "k.txt containing kiwi")."""
    file = re.escape(name)
    patterns = (rf"\b{_VERBS}\s+{_LITERAL}\s+(?:to|in|into)\s+(?:a\s+file\s+(?:named|called)\s+)?{file}\b",
                rf"\b{file}\s+(?:containing|with|that says|saying)\s+{_LITERAL}(?:$|[.,;!?]|\s+and\b)")
    try:
        text = (path or workspace / name).read_text(encoding="utf-8", errors="replace").lower()
    except OSError:
        return []
    for pattern in patterns:
        for match in re.finditer(pattern, goal, re.IGNORECASE):
            literal = match.group(1).strip()
            if not literal or len(literal.split()) > 4 or _NOT_LITERAL.search(literal):
                continue
            if literal.lower() not in text:
                return [Finding("files", f"{name} does not contain {literal!r}, which the goal asks for")]
    return []


def _check_value(goal: str, ev: Evidence, answer: str) -> list[Finding]:
    if not asks_value(goal):
        return []
    if file_names(goal) and not _NUMERIC.search(goal) and ev.written:
        return []  # "which file holds the list? save it in a.txt": the file is the answer, checked above
    if not answer.strip():
        return [Finding("value", "the goal asks for a value but the final answer is empty")]
    if _NUMERIC.search(goal):
        said = numbers(answer)
        if not said:
            return [Finding("value", "the goal asks for a number but the final answer states none")]
        if said & ev.numbers:
            return []
        computed = [v for v in ev.values if numbers(v)]
        if computed:
            return [Finding("value", f"the run computed {computed[-1]} but the final answer says {answer[:80]!r}")]
        if said <= numbers(goal):
            return [Finding("value", "the final answer only repeats numbers from the goal", MISSING)]
        unseen = ", ".join(sorted(said - numbers(goal)))
        if ev.measured:  # the run computed, and what it printed does not show the number: made up, not missing
            return [Finding("value", f"the code this run ran printed nothing that shows {unseen}; print the result")]
        return [Finding("value", f"no tool observation of this run shows {unseen}", MISSING)]
    if ev.values and not any(v.lower() in answer.lower() for v in ev.values):
        return [Finding("value", f"the run found {ev.values[-1]!r} but the final answer does not state it")]
    if not ev.values and _stems(ev.text) - _stems(goal) and not (_stems(answer) - _EMPTY - _stems(goal)):
        return [Finding("value", "the final answer says nothing beyond the goal's words; state what the run found")]
    if not ev.text and not ev.values:
        return [Finding("value", "no tool observation of this run supports the answer", MISSING)]
    return []


def _check_acted(goal: str, ev: Evidence, tool_names: Any) -> list[Finding]:
    """A goal an answer alone cannot reach (needs_tools), ended by an answer alone (a direct answer, or a plan of
    the answer tool only): nothing was looked at or done, whatever the answer says. Files to write are
    _check_files' business; a failed last step, check_outcome's."""
    if ev.tools or ev.last_failed or wanted_files(goal, tool_names):
        return []
    need = needs_tools(goal, tool_names)
    return [Finding("acted", f"the goal {need}, but no step of this run did anything: an answer alone does not "
                             "reach it")] if need else []


def _check_answer_claims(ev: Evidence, answer: str, workspace: Path, tool_names: Any) -> list[Finding]:
    findings = []
    for name in file_names(answer, tool_names):
        if name in ev.written or name in ev.read or name in ev.files_at_start:
            continue
        if ev.where(workspace, name).exists():
            continue
        findings.append(Finding("answer_files", f"the answer names {name}, which this run did not write"))
    for tool in tool_names:
        if not re.search(r"[_.]", tool):
            continue  # a plain word ("recall", "remember") in an answer is English, not a claim about a tool
        if re.search(rf"\b{re.escape(tool)}\b", answer) and tool not in ev.tools:
            findings.append(Finding("answer_tools", f"the answer claims {tool}, which this run did not call"))
    if _LIBRARY.search(answer) and "run_python" not in ev.tools and re.search(r"\bpython\b", answer, re.I):
        findings.append(Finding("answer_tools", "the answer claims Python code that this run did not run"))
    return findings


def compose_answer(goal: str, state: Any, answer: str, tool_names: Any = (), ev: Evidence | None = None) -> str:
    """An answer built from the evidence: the observed value first, then the files actually written."""
    ev = ev if ev is not None else Evidence.of(state)
    parts = []
    if asks_value(goal) and ev.values:
        parts.append(ev.values[-1])
    elif asks_value(goal) and (line := telling_line(goal, ev)):
        parts.append(line)
    written = sorted(ev.written)
    if written:
        named = [f for f in file_names(goal, tool_names) if f in ev.written] or written
        parts.append("Wrote " + ", ".join(named[:5]) + ".")
    return " ".join(parts) if parts else answer


def check_tools_asked(state: Any, ev: Evidence | None = None) -> list[Finding]:
    """A tool the goal asked for (by name, or by phrase: "using Python"; bound to the first plan unless
    ``loop.tool_requests`` is off) that no step of the run called successfully: an answer without it is the
    model's guess, not the tool's value."""
    called = (ev if ev is not None else Evidence.of(state)).tools
    return [Finding("tools", f"the goal asks for {name} but no step of this run called it successfully")
            for name in getattr(state, "requested_tools", []) if name != "final_answer" and name not in called]


@hookimpl(trylast=True)
def verify_outcome(goal, state, answer, workspace, tools):
    """The built-in rule checks (see the module docstring)."""
    names = tools.names() if tools is not None else ()
    ev = Evidence.of(state)
    return check_outcome(goal.text, state, answer, Path(workspace), names, ev) + check_tools_asked(state, ev)


def verification_of(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """A journaled run's verification, read from its stop phase: ``{"verified": ..., "findings": [...]}``."""
    for phase in reversed(phases):
        if phase.get("kind") == "stop":
            return {"verified": phase.get("verified"), "findings": phase.get("findings", [])}
    return {"verified": None, "findings": []}
