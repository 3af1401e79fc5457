"""Schemathesis hooks for the daemon API run (SCHEMATHESIS_HOOKS): a goal body is also sent with each input that
once gave a 500 (issue 15), as raw JSON bytes, since requests itself refuses to encode NaN."""

from __future__ import annotations

import json

import schemathesis
from hypothesis import strategies as st

NOT_IN_THE_SCHEMA = {
    "NaN budget": lambda body: body | {"budgets": {"max_seconds": float("nan")}},
    "Infinity budget": lambda body: body | {"budgets": {"max_seconds": float("inf")}},
    "-Infinity timeout": lambda body: body | {"budgets": {"tool_timeout_s": float("-inf")}},
    "lone surrogate": lambda body: body | {"text": "goal \ud800 text"},
    "NUL byte": lambda body: body | {"text": "goal \x00 text"},
    "memory yes": lambda body: body | {"memory": "yes"},
    "unknown tool": lambda body: body | {"allowed_tools": ["no_such_tool"]},
}


@schemathesis.hook
def flatmap_body(context, body):  # type: ignore[no-untyped-def]
    if not isinstance(body, dict) or "text" not in body:
        return st.just(body)
    choices = [None, *NOT_IN_THE_SCHEMA.values()]
    return st.sampled_from(choices).map(lambda mutate: body if mutate is None else json.dumps(mutate(body)).encode())
