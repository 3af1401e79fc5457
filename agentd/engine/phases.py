"""The four model phases as data: for each, the prompt (rendered from templates), the JSON schema that
constrains decoding, and the validator that turns parsed JSON into a record.

The system message and the start of the user message are identical in every phase of a run, so llama.cpp's
prefix cache serves them after the first call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import jinja2
import tomllib

from ..records import Critique, Decision, Feedback, Plan, PlannedStep, ToolCall
from ..tools import Tool, ToolError, ToolRegistry
from .structured import Invalid

TEXT = {"type": "string", "minLength": 1, "maxLength": 200}
SUMMARY = {"type": "string", "minLength": 1, "maxLength": 120}  # a line for the user; small models ramble on
CHOICE_HELP = {
    "continue": "do the next step",
    "done": "the goal is reached",
    "replan": "the plan must change",
    "give_up": "the goal cannot be reached",
}


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: resources.files("agentd.engine.prompts").joinpath(name).read_text()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(name: str, **values: Any) -> str:
    return _env().get_template(name).render(**values)


def signature(tool: Tool) -> str:
    """The tool's arguments in one compact line: ``city: string, unit?: "c"|"f" = "c"`` (``?``: optional)."""
    props = tool.parameters.get("properties") or {}
    required = set(tool.parameters.get("required") or [])
    return ", ".join(
        f"{name}{'' if name in required else '?'}: {type_text(spec)}{_default(spec)}" for name, spec in props.items()
    )


def type_text(spec: Any) -> str:
    """A JSON schema's type as a short text: ``integer``, ``array of string``, ``"a"|"b"`` for an enum."""
    if not isinstance(spec, dict):
        return "any"
    if "const" in spec:
        return json.dumps(spec["const"], ensure_ascii=False)
    if "enum" in spec:
        values = [json.dumps(v, ensure_ascii=False) for v in spec["enum"][:ENUM_SHOWN]]
        return "|".join(values + (["..."] if len(spec["enum"]) > ENUM_SHOWN else []))
    for key in ("anyOf", "oneOf"):
        if isinstance(spec.get(key), list):
            return "|".join(dict.fromkeys(type_text(s) for s in spec[key]))
    kind = spec.get("type")
    if isinstance(kind, list):
        return "|".join(map(str, kind))
    if kind == "array":
        return f"array of {type_text(spec.get('items'))}"
    return str(kind or ("object" if "properties" in spec or "$ref" in spec else "any"))


def one_of(options: list[dict[str, Any]]) -> dict[str, Any]:
    """A schema that is any one of ``options``; the option itself when there is one."""
    return {"anyOf": options} if len(options) > 1 else options[0]


ENUM_SHOWN = 8  # a long list of allowed values is the grammar's business; the prompt shows the first few
PARAM_TEXT = 120  # characters of a parameter's description in the act request


def _default(spec: Any) -> str:
    if not isinstance(spec, dict) or spec.get("default") is None:
        return ""
    text = json.dumps(spec["default"], ensure_ascii=False, default=str)
    return f" = {text if len(text) <= 30 else text[:27] + '...'}"


def contract(tool: Tool) -> list[str]:
    """One line per argument (type, required or default, description) for the act request; none when the schema
    describes no argument (the system message's signature already says everything else)."""
    props = tool.parameters.get("properties") or {}
    if not any(isinstance(spec, dict) and spec.get("description") for spec in props.values()):
        return []
    required = set(tool.parameters.get("required") or [])
    lines = []
    for name, spec in props.items():
        need = "required" if name in required else f"optional{_default(spec).replace(' = ', ', default ')}"
        about = " ".join(str(spec.get("description", "") if isinstance(spec, dict) else "").split())
        about = about if len(about) <= PARAM_TEXT else about[: PARAM_TEXT - 3] + "..."
        lines.append(f"- {name} ({type_text(spec)}, {need}){': ' + about if about else ''}")
    return lines


def system_message(tools: ToolRegistry) -> str:
    """The tools, one line each, with their arguments' contracts (where the schema describes them) below: a
    direct call (plan_schema's ``calls``) is written with no act request to show them."""
    return _system_text(tuple((t.name, signature(t), t.description, tuple(contract(t))) for t in tools.tools.values()))


@lru_cache(maxsize=64)
def _system_text(tools: tuple[tuple[str, str, str, tuple[str, ...]], ...]) -> str:
    """Rendered once per tool set and process: it is the same in every call of every run that offers it."""
    items = [{"name": name, "signature": sig, "description": text, "contract": lines}
             for name, sig, text, lines in tools]
    return render("system.j2", tools=items)


def canonical(value: Any) -> dict[str, Any]:
    """The reply the model sees in later turns: only the fields of its own answer, cleanly formatted."""
    if isinstance(value, ToolCall):
        return {"tool": value.tool, "args": value.args}
    if isinstance(value, Plan):
        if value.call is not None:
            return {"tool": value.call.tool, "args": value.call.args}
        return {"answer": value.answer} if value.answer else {"steps": [s.to_dict() for s in value.steps]}
    if isinstance(value, Critique):
        return {"verdict": value.verdict.value, "reasons": value.reasons}
    if isinstance(value, Feedback):
        return {"decision": value.decision.value, "summary": value.summary, "final_answer": value.final_answer}
    if isinstance(value, dict):  # the model verifier's verdict
        return value
    return value.to_dict()


def reply_text(value: dict[str, Any]) -> str:
    """A phase's parsed answer as the model sees it in later turns: canonical, compact JSON."""
    return json.dumps(value, ensure_ascii=False)


# -- requests: the user turns of the conversation ------------------------------------------------
def plan_request(
    goal: str, memories: list[str], notes: list[str], first: bool, direct: bool | str = False,
    folders: Sequence[str] = (), previous: dict[str, Any] | None = None, calls: bool = False,
) -> str:
    """The plan turn; with ``direct``, the model may answer instead when no tool applies (``"first"``: that
    option leads the request, for a goal no tool's words match: selection.matching_tools); with ``calls``, it
    writes the call itself when one call reaches the goal; ``folders``: the attached folders' listing
    (agentd.folders.listing); a follow-up's first one opens with the run before (its goal, answer and files)."""
    lead = direct == "first" and first
    return render("plan.j2", goal=goal, memories=memories, notes=notes, first=first, direct=bool(direct) and not lead,
                  lead=lead, folders=list(folders), previous=previous, calls=calls)


def act_request(step_number: int, intent: str, goal: str = "", tool: Tool | None = None) -> str:
    """The act turn: the planned tool's arguments when its schema describes them, and the step; after the first
    step also the user's goal (a small model's intent is often a poor restatement of it). Step 1 follows the
    plan turn, which shows the goal just above: repeated there, it made the 135M model write the file's name
    as its content ("Create hello.txt containing the word hello")."""
    return _act_text(step_number, intent, goal, tool.name if tool else "", contract(tool) if tool else [])


def _act_text(step_number: int, intent: str, goal: str, tool: str, lines: list[str] | tuple[str, ...]) -> str:
    return render("act.j2", step_number=step_number, intent=intent, goal=goal if step_number > 1 else "",
                  tool=tool, contract=list(lines))


def feedback_request(result: str, remaining: int, choices: list[str], ok: bool) -> str:
    helps = CHOICE_HELP | ({} if ok else {"continue": "try this step again differently"})
    return render("feedback.j2", result=result, remaining=remaining, choices=choices, choice_help=helps)


@cache
def _examples() -> tuple[dict[str, Any], ...]:
    text = resources.files("agentd.engine.prompts").joinpath("examples.toml").read_text(encoding="utf-8")
    return tuple(tomllib.loads(text).get("example", []))


def example_turns(tools: ToolRegistry, limit: int = -1, calls: bool = False) -> tuple[tuple[str, str], ...]:
    """Worked runs as earlier turns, rendered by the same functions as a real run's turns: the first ``limit``
    whose ``tools`` are registered (-1: all); with ``calls`` (direct calls), a one-step run is its plan turn
    answered by the call, as a real one is. Rendered once per tool set (names and contracts) and process."""
    names = frozenset(tools.names())
    used = {c["tool"] for example in _examples() for c in example["calls"]} & names
    contracts = tuple(sorted((name, tuple(contract(tools[name]))) for name in used))
    return _example_turns(names, contracts, limit, calls)


@lru_cache(maxsize=64)
def _example_turns(
    tools: frozenset[str], contracts: tuple[tuple[str, tuple[str, ...]], ...], limit: int, calls: bool = False
) -> tuple[tuple[str, str], ...]:
    lines = dict(contracts)
    turns: list[tuple[str, str]] = []
    shown = 0
    for example in _examples():
        if not all(c["tool"] in tools for c in [*example["calls"], *example["steps"]]):
            continue
        if shown == limit:
            break
        shown += 1
        request = plan_request(example["goal"], [], [], True, calls=calls)
        if calls and len(example["steps"]) == 1:  # plan and act in one reply; the rules end the run
            call = example["calls"][0]
            turns += [("user", request), ("assistant", reply_text({"tool": call["tool"], "args": call["args"]}))]
            continue
        turns += [("user", request), ("assistant", reply_text({"steps": example["steps"]}))]
        for number, c in enumerate(example["calls"], 1):
            remaining = len(example["steps"]) - number
            last = number == len(example["calls"])  # an example may reach its goal before its plan ends
            final = example["final_answer"] if last else ""
            decision = {"decision": "done" if last else "continue", "summary": final or "step done",
                        "final_answer": final}
            turns += [
                ("user", _act_text(number, example["steps"][number - 1]["intent"], example["goal"], c["tool"],
                                   lines[c["tool"]])),
                ("assistant", reply_text({"tool": c["tool"], "args": c["args"]})),
                ("user", feedback_request(c["result"], remaining, feedback_choices(remaining, True), True)),
                ("assistant", reply_text(decision)),
            ]
    return tuple(turns)


def prompt_head(tools: ToolRegistry, examples: int = -1, calls: bool = False) -> tuple[tuple[str, str], ...]:
    """The constant start of every prompt of a run: the system message and the worked examples."""
    return (("system", system_message(tools)), *example_turns(tools, examples, calls))


TURN_CHARS = 1200  # a runaway reply or observation never floods the context window


def messages(
    tools: ToolRegistry,
    transcript: list[tuple[str, str]],
    request: str,
    keep: int = 16,
    budget_chars: int | None = None,
    examples: int = -1,
    calls: bool = False,
    head: tuple[tuple[str, str], ...] | None = None,
) -> list[tuple[str, str]]:
    """System, worked examples, the run so far (its first turns and the latest), then the new request.
    ``head``: ``prompt_head(tools, examples, calls)`` when the caller keeps it (a run does).

    With ``budget_chars`` (the context window, in characters), older middle turns are dropped in pairs until
    the prompt fits, so a long run never overflows the model's context.
    """
    if len(transcript) > keep:
        transcript = transcript[:2] + transcript[-(keep - 2) :]
    transcript = [(role, text if len(text) <= TURN_CHARS else text[:TURN_CHARS] + " [...]") for role, text in transcript]
    head = head if head is not None else prompt_head(tools, examples, calls)
    if budget_chars is not None:
        fixed = sum(len(t) for _, t in head) + len(request)
        while len(transcript) > 2 and fixed + sum(len(t) for _, t in transcript) > budget_chars:
            transcript = transcript[:2] + transcript[4:]
    return [*head, *transcript, ("user", request)]


# -- plan -----------------------------------------------------------------------------------------
def plan_schema(
    tools: ToolRegistry, max_steps: int, first: list[str] | None = None, direct: bool = False, calls: bool = False,
    paths: list[str] | None = None,
) -> dict[str, Any]:
    """Steps of intent and tool; with ``first`` (tools the goal asked for), step 1 must use one of those; with
    ``direct`` (and no tool asked for), ``{"answer": ...}`` instead: no tool applies. With ``calls`` (direct
    calls), a plan of one step is written as that step's call, under its tool's argument grammar (``paths``
    grounds a required path as in act_schema): steps are for goals that take two or more."""

    def step(names: list[str]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"intent": TEXT, "tool": {"type": "string", "enum": names}},
            "required": ["intent", "tool"],
        }

    steps: dict[str, Any] = {"type": "array", "items": step(tools.names()), "minItems": 1, "maxItems": max_steps}
    if first:
        steps["prefixItems"] = [step(first)]
    plan = {"type": "object", "properties": {"steps": steps}, "required": ["steps"]}
    options = []
    if calls:
        options = call_options(tools.subset(first) if first else tools, paths=paths)
        steps["minItems"] = 2
    if max_steps >= steps["minItems"]:
        options.append(plan)
    if direct and not first:
        options.append({"type": "object", "properties": {"answer": ANSWER}, "required": ["answer"]})
    return one_of(options)


ANSWER = {"type": "string", "minLength": 1, "maxLength": 400, "x-word-start": True}


def parse_plan(
    value: Any, tools: ToolRegistry, max_steps: int, first: list[str] | None = None, direct: bool = False,
    calls: bool = False, goal: str = "",
) -> Plan:
    """A plan of steps, or (``direct``) an answer, or (``calls``) one call: a one-step plan whose step is the
    goal and whose call is already written."""
    if isinstance(value, list):
        value = {"steps": value}
    if calls and isinstance(value, dict) and "tool" in value and not value.get("steps"):
        call = parse_act(value, tools)
        if first and call.tool not in first:
            raise Invalid(f"the goal asks for {' or '.join(first)}: call it")
        intent = " ".join(goal.split())[: TEXT["maxLength"]] or f"call {call.tool}"
        return Plan(steps=[PlannedStep(intent=intent, tool=call.tool)], call=call)
    if direct and not first and isinstance(value, dict) and not value.get("steps"):
        answer = squeeze(str(value.get("answer") or ""))
        if re.search(r"\w", answer):  # "..." (the prompt's placeholder, copied) says nothing
            return Plan(steps=[], answer=answer)
    if not isinstance(value, dict) or not isinstance(value.get("steps"), list) or not value["steps"]:
        raise Invalid('expected {"steps": [...]} with at least one step')
    steps: list[PlannedStep] = []
    for i, raw in enumerate(value["steps"][:max_steps], 1):
        if isinstance(raw, str):
            raw = {"intent": raw}
        if not isinstance(raw, dict) or not str(raw.get("intent", "")).strip():
            raise Invalid(f"step {i} needs a non-empty intent")
        step = PlannedStep(intent=str(raw["intent"]).strip(), tool=str(raw.get("tool", "")).strip())
        if steps and _same_step(step, steps[-1]):
            continue  # small models stutter: the step just planned, again in other words ("23 * 17"), is dropped
        steps.append(step)
    if first and steps[0].tool not in first:
        raise Invalid(f"the goal asks for {' or '.join(first)}: step 1 must use it")
    return Plan(steps=steps, reasoning=str(value.get("reasoning", "")))


def _same_step(a: PlannedStep, b: PlannedStep) -> bool:
    """Same tool and the same words in any order (which also folds "copy a to b", "copy b to a": a price paid
    for small models, whose stutter is far more common than a plan that swaps two arguments back)."""
    return a.tool == b.tool and _words(a.intent) == _words(b.intent)


def _words(text: str) -> list[str]:
    return sorted(re.findall(r"\w+|[^\w\s]", text.lower()))


# -- critique -------------------------------------------------------------------------------------
CRITIQUE_SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["approve", "revise", "reject"]},
        "reasons": {"type": "array", "items": TEXT, "maxItems": 3},
    },
    "required": ["verdict", "reasons"],
}


def parse_critique(value: Any) -> Critique:
    if not isinstance(value, dict) or value.get("verdict") not in ("approve", "revise", "reject"):
        raise Invalid('expected {"verdict": "approve" | "revise" | "reject", "reasons": [...]}')
    reasons = value.get("reasons") or []
    if isinstance(reasons, str):
        reasons = [reasons]
    return Critique(verdict=value["verdict"], reasons=[str(r) for r in reasons], critic="model")


# -- verify (the optional model verifier) --------------------------------------------------------
VERIFY_SCHEMA = {
    "type": "object",
    "properties": {"reached": {"type": "boolean"}, "reason": TEXT},
    "required": ["reached", "reason"],
}


def parse_verify(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("reached"), bool):
        raise Invalid('expected {"reached": true | false, "reason": "..."}')
    return {"reached": value["reached"], "reason": str(value.get("reason", ""))}


# -- act ------------------------------------------------------------------------------------------
_FILE_NAME = re.compile(r"[\w\-./]*\w\.[A-Za-z0-9]{1,8}\b")


def path_candidates(goal: str, known: list[str]) -> list[str]:
    """File names the goal mentions, plus files known to exist: what a path argument may be when grounded."""
    return sorted(set(_FILE_NAME.findall(goal)) | set(known))


def act_schema(tools: ToolRegistry, preferred: str = "", paths: list[str] | None = None) -> dict[str, Any]:
    """One alternative per tool: the name is a constant and the arguments follow that tool's schema.

    With ``paths``, a required ``path`` argument is grounded: it must be one of those names, which stops small
    models from inventing file names the user never gave.
    """
    options = call_options(tools, preferred, paths)
    return one_of(options)


def call_options(tools: ToolRegistry, preferred: str = "", paths: list[str] | None = None) -> list[dict[str, Any]]:
    """``{"tool": name, "args": ...}`` for each tool, its arguments under that tool's schema (act_schema)."""
    names = sorted(tools.names(), key=lambda n: n != preferred)  # the planned tool first
    options = []
    for name in names:
        params = json.loads(json.dumps(tools[name].parameters))
        params.setdefault("type", "object")
        if paths and "path" in params.get("required", []):
            params["properties"]["path"] = {"type": "string", "enum": paths}
        options.append(
            {
                "type": "object",
                "properties": {"tool": {"const": name}, "args": params},
                "required": ["tool", "args"],
            }
        )
    return options


def parse_act(value: Any, tools: ToolRegistry) -> ToolCall:
    if not isinstance(value, dict) or not isinstance(value.get("tool"), str):
        raise Invalid('expected {"tool": "name", "args": {...}}')
    name = value["tool"].strip()
    if name not in tools:
        raise Invalid(f"unknown tool {name!r}; choose one of: {', '.join(tools.names())}")
    args = value.get("args") or {}
    if not isinstance(args, dict):
        raise Invalid("args must be a JSON object")
    try:
        tools[name].validate(args)
    except ToolError as exc:
        raise Invalid(str(exc)) from None
    return ToolCall(tool=name, args=args, reasoning=str(value.get("reasoning", "")))


# -- feedback -------------------------------------------------------------------------------------
def feedback_choices(remaining: int, ok: bool) -> list[str]:
    """What the model may decide, given where the plan stands; narrowing the enum keeps small models sane."""
    if not ok:
        return ["replan", "continue", "give_up"]
    if remaining:
        return ["continue", "done", "replan", "give_up"]
    return ["done", "replan", "give_up"]


def feedback_schema(choices: list[str], lead: str = "") -> dict[str, Any]:
    """The decision, a summary and the final answer; with ``lead``, a ``done`` answer starts with that text."""

    def shape(decisions: list[str], answer: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"decision": {"type": "string", "enum": decisions}, "summary": SUMMARY, "final_answer": answer},
            "required": ["decision", "summary", "final_answer"],
        }

    answer = {"type": "string", "maxLength": 400}
    if not lead or "done" not in choices:
        return shape(choices, answer)
    others = [c for c in choices if c != "done"]
    done = shape(["done"], answer | {"x-prefix": lead})
    return one_of([done, shape(others, answer)] if others else [done])


def parse_feedback(value: Any, choices: list[str]) -> Feedback:
    if not isinstance(value, dict):
        raise Invalid('expected {"decision": ..., "summary": ..., "final_answer": ...}')
    decision = str(value.get("decision", "")).strip()
    if decision not in choices:
        raise Invalid(f"decision must be one of {choices}, got {decision!r}")
    return Feedback(
        decision=Decision(decision),
        summary=squeeze(str(value.get("summary", ""))),
        final_answer=squeeze(str(value.get("final_answer", "") or "")),
    )


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def squeeze(text: str) -> str:
    """``text`` without repeated sentences, nor a cut-off repeat at its end: a small model's degenerate loop
    ("The end was reached. The end was reached. The end wa") read as what it says once."""
    kept: list[str] = []
    seen: set[str] = set()
    sentences = _SENTENCE_END.split(text.strip())
    for i, sentence in enumerate(sentences):
        key = " ".join(sentence.lower().split())
        if key in seen or (i == len(sentences) - 1 and i and any(s.startswith(key) for s in seen)):
            continue
        seen.add(key)
        kept.append(sentence)
    return " ".join(kept)
