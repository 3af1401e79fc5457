"""Structured output: ask for JSON matching a schema, constrain decoding where the model allows, then parse,
repair, validate, and re-ask with the validation error a bounded number of times.

Never crashes and never retries forever: the caller gets a value or a StructuredOutputError carrying the last
raw output, which the loop records on the step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import StructuredOutputError
from ..models.registry import ModelHandle
from ..records import Usage
from . import gbnf

T = TypeVar("T")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


class Invalid(ValueError):
    """Raised by a phase's validator: the message is shown to the model on the retry."""


@dataclass
class Reply:
    """A structured answer and how it was obtained."""

    value: Any
    raw: str
    usage: Usage
    attempts: int
    errors: list[str] = field(default_factory=list)
    repaired: bool = False


def decoding_kwargs(handle: ModelHandle, schema: dict[str, Any], name: str) -> dict[str, Any]:
    """Keyword arguments that make the provider constrain its output to the schema."""
    if handle.structured == "grammar":
        if handle.grammar_kwargs is not None:
            return handle.grammar_kwargs(gbnf.to_gbnf(schema))
        return {"response_format": {"type": "json_object", "schema": schema}}
    if handle.structured == "json_schema":
        return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}}
    if handle.structured == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {}


def extract_json(text: str) -> tuple[Any, bool]:
    """Parse JSON from model text; returns (value, repaired). Raises Invalid when nothing usable is there."""
    candidate = text.strip()
    fenced = _FENCE.search(candidate)
    if fenced:
        candidate = fenced.group(1).strip()
    try:
        return json.loads(candidate), False
    except ValueError:
        pass
    start = min((i for i in (candidate.find("{"), candidate.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise Invalid("the reply contained no JSON object")
    from json_repair import repair_json

    repaired = repair_json(candidate[start:], return_objects=True)
    if repaired in ("", None, [], {}) and candidate[start:].strip() not in ("{}", "[]"):
        raise Invalid("the reply's JSON could not be parsed or repaired")
    return repaired, True


def ask(
    handle: ModelHandle,
    messages: list[tuple[str, str]],
    schema: dict[str, Any],
    validate: Callable[[Any], T],
    *,
    name: str,
    retries: int = 2,
    on_token: Callable[[int], None] | None = None,
    head: int = 0,
) -> Reply:
    """Ask until ``validate`` accepts the parsed JSON, at most ``retries`` re-asks; raise StructuredOutputError.

    ``on_token`` follows each call's generated tokens; ``head`` counts the leading messages that are the run's
    constant prompt head (both: ModelHandle.complete).
    """
    usage = Usage()
    errors: list[str] = []
    kwargs = decoding_kwargs(handle, schema, name)
    convo = list(messages)
    raw = ""
    for attempt in range(1, retries + 2):
        try:
            raw, call_usage = handle.complete(convo, on_token=on_token, head=head, **kwargs)
        except Exception as exc:
            if kwargs and handle.structured in ("json_schema", "json_object") and _unsupported(exc):
                # The server refused the response_format: fall back to prompt-only JSON for this handle.
                handle.structured = "prompt"
                kwargs = {}
                raw, call_usage = handle.complete(convo, on_token=on_token, head=head, **kwargs)
            else:
                raise
        usage.add(call_usage)
        try:
            value, repaired = extract_json(raw)
            return Reply(validate(value), raw, usage, attempt, errors, repaired)
        except (Invalid, ValueError, TypeError, KeyError) as exc:
            problem = str(exc) or type(exc).__name__
            errors.append(problem)
            convo = [
                *messages,
                ("assistant", raw[:1500]),
                ("user", f"That reply was not valid: {problem}. Reply again with only the corrected JSON."),
            ]
    raise StructuredOutputError(f"{name}: no valid output after {retries + 1} attempts: {errors[-1]}", raw=raw)


def _unsupported(exc: Exception) -> bool:
    text = str(exc).lower()
    return "response_format" in text or "json_schema" in text or "not supported" in text
