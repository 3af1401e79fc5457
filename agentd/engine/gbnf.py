"""JSON Schema → GBNF: the grammar llama.cpp uses to constrain decoding, for the subset of JSON Schema that
agentd's phases and tool schemas use.

Why our own: the converter bundled with llama-cpp-python lets strings hold raw control characters (a small
model then "writes" hundreds of newlines until max_tokens) and ignores ``prefixItems``. Here strings are JSON
strings (control characters only as escapes), lengths and counts use GBNF's ``{m,n}`` repetition, whitespace
is at most one space, and numbers are bounded.

A schema part the converter cannot express safely (an unsupported ``$ref``, a left-recursive ``$ref``,
``minLength`` above ``maxLength``) becomes "any JSON value" with a warning, never a grammar llama.cpp would
reject or choke on: a third-party tool's odd schema must not take a run down.

Supported: type (one or a list), const, enum, anyOf/oneOf, allOf with one member, object (properties in
declared order, required ones first, others optional), array (items, prefixItems, minItems, maxItems),
string (minLength, maxLength, and agentd's ``x-prefix``: a text the string must start with, or ``x-word-start``:
it starts with a letter, a digit or a non-ASCII character; a string without
maxLength is capped at ``max_string`` characters, STRING_CHARS by default, so a degenerate reply stops early
instead of filling the token limit; a maxLength above LONG_STRING is no bound in the grammar), integer,
number, boolean, null, and ``$ref`` into ``$defs``/``definitions``. Anything else (``{}``, ``additionalProperties`` only, unknown keywords) becomes any JSON value.

The grammar accepts a subset of what the schema allows, on purpose: required properties first, in declared
order, no undeclared ones, one optional space between tokens, at most 16 digits per number part.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

log = logging.getLogger(__name__)
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class Unsupported(ValueError):
    """A schema part with no safe grammar; the converter falls back to any JSON value for it."""


STRING_CHARS = 200  # the default cap on a string without maxLength: paths, names, queries are far shorter
# A maxLength above this is left to the token limit: llama.cpp expands {0,n} into n rules, and a text that
# long (a file's content, code) is what the schema asked to allow.
LONG_STRING = 2000
SPACE = '" "?'
PRIMITIVES = {
    "space": SPACE,
    "char": r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "string": r'"\"" char* "\"" space',
    "integer": r'"-"? ([0-9] | [1-9] [0-9]{0,15}) space',
    "number": r'"-"? ([0-9] | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,4})? space',
    "boolean": r'("true" | "false") space',
    "null": r'"null" space',
    "value": "object | array | string | number | boolean | null",
    "object": r'"{" space (string ":" space value ("," space string ":" space value)*)? "}" space',
    "array": r'"[" space (value ("," space value)*)? "]" space',
}
# A letter or digit, or any character beyond ASCII: what a string with ``x-word-start`` starts with (a small
# model otherwise copies the prompt's placeholder, {"answer": "..."}).
WORD_START = r"[0-9A-Za-z\x80-\U0010FFFF]"
# Which primitives each one needs, so the grammar holds only rules that are used.
NEEDS = {
    "string": ["char", "space"],
    "integer": ["space"],
    "number": ["space"],
    "boolean": ["space"],
    "null": ["space"],
    "value": ["object", "array", "string", "number", "boolean", "null"],
    "object": ["space", "string", "value"],
    "array": ["space", "value"],
}


def terminal(json_text: str) -> str:
    """JSON text as a GBNF terminal (json.dumps never leaves a raw newline, so quotes and backslashes suffice).

    Lone surrogates (file names that are not valid UTF-8) are written as JSON ``\\uXXXX`` escapes: llama.cpp
    takes the grammar as UTF-8.
    """
    json_text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)
    return '"' + json_text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: Any) -> str:
    """A JSON value as a GBNF terminal, followed by the optional space."""
    return terminal(json.dumps(value, ensure_ascii=False)) + " space"


def repeat(item: str, low: int, high: int | None) -> str:
    if high is not None and low > high:
        raise Unsupported(f"at least {low} but at most {high}")
    if (low, high) == (0, 1):
        return f"({item})?"
    if high is None:
        return f"({item})*" if low == 0 else (f"({item})+" if low == 1 else f"({item}){{{low},}}")
    if low == high == 1:
        return item
    return f"({item}){{{low},{high}}}"


class Converter:
    def __init__(self, root: dict[str, Any], max_string: int | None = STRING_CHARS) -> None:
        self.root = root
        self.max_string = max_string
        self.rules: dict[str, str] = {}
        self.by_body: dict[str, str] = {}
        self.refs: dict[str, str] = {}
        self.bare: frozenset[str] = frozenset()  # refs entered since the last token was consumed

    # -- rule bookkeeping ---------------------------------------------------------------------------
    def primitive(self, name: str) -> str:
        if name not in self.rules:
            self.rules[name] = PRIMITIVES[name]
            for needed in NEEDS.get(name, []):
                self.primitive(needed)
        return name

    def add(self, hint: str, body: str) -> str:
        """A named rule for ``body``; identical bodies share one rule."""
        if body in self.by_body:
            return self.by_body[body]
        base = re.sub(r"[^a-zA-Z0-9-]+", "-", hint).strip("-").lower() or "r"
        name, n = base, 1
        while name in self.rules or name in PRIMITIVES or name == "root":  # root is to_gbnf's
            n += 1
            name = f"{base}-{n}"
        self.rules[name] = body
        self.by_body[body] = name
        return name

    # -- schema walk --------------------------------------------------------------------------------
    def visit(self, schema: Any, hint: str) -> str:
        try:
            return self._visit(schema, hint)
        except Unsupported as exc:
            log.warning("JSON schema part %s has no safe grammar (%s): any JSON value is allowed there", hint, exc)
            return self.primitive("value")

    def _visit(self, schema: Any, hint: str) -> str:
        if schema is True or not isinstance(schema, dict):
            return self.primitive("value")
        if "$ref" in schema:
            return self.ref(schema["$ref"])
        self.primitive("space")
        if "const" in schema:
            return self.add(hint, literal(schema["const"]))
        if "enum" in schema:
            return self.add(hint, " | ".join(literal(v) for v in schema["enum"]))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self.visit(s, f"{hint}-{i}") for i, s in enumerate(schema[key])]
                return self.add(hint, " | ".join(options))
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.visit(schema["allOf"][0], hint)
        kind = schema.get("type")
        if isinstance(kind, list):
            options = [self.visit({**schema, "type": k}, f"{hint}-{k}") for k in kind]
            return self.add(hint, " | ".join(options))
        if kind == "object" or (kind is None and "properties" in schema):
            return self.object(schema, hint)
        if kind == "array":
            return self.array(schema, hint)
        if kind == "string":
            return self.string(schema, hint)
        if kind in ("integer", "number", "boolean", "null"):
            return self.primitive(kind)
        return self.primitive("value")

    def string(self, schema: dict[str, Any], hint: str) -> str:
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength", self.max_string)
        high = None if high is None or int(high) > LONG_STRING else int(high)
        prefix = str(schema.get("x-prefix", ""))
        if low == 0 and high is None and not prefix:
            return self.primitive("string")
        if high is not None and low > high:
            raise Unsupported(f"minLength {low} above maxLength {high}")
        self.primitive("char")
        lead = ""
        if prefix:  # agentd's extension: the string starts with this text (grounded answers)
            prefix = prefix[:high]
            lead = terminal(json.dumps(prefix, ensure_ascii=False)[1:-1]) + " "
            low, high = max(low - len(prefix), 0), None if high is None else max(high - len(prefix), 0)
        elif schema.get("x-word-start") and high != 0:  # agentd's extension: no "..." for an answer
            lead = WORD_START + " "
            low, high = max(low - 1, 0), None if high is None else high - 1
        rest = repeat("char", low, high) if high != 0 else ""
        return self.add(hint, rf'"\"" {lead}{rest} "\"" space')

    def ref(self, ref: str) -> str:
        if ref in self.bare:
            raise Unsupported(f"$ref {ref!r} refers to itself before any token (left recursion)")
        if ref in self.refs:
            return self.refs[ref]
        match = re.fullmatch(r"#/(\$defs|definitions)/(.+)", ref)
        target = self.root.get(match.group(1), {}).get(match.group(2)) if match else None
        if match is None or target is None:
            raise Unsupported(f"$ref {ref!r}: only #/$defs/NAME and #/definitions/NAME are followed")
        name = self.add(f"ref-{match.group(2)}", f"<pending {ref}>")  # reserved first: refs may recurse
        self.refs[ref] = name
        outer, self.bare = self.bare, self.bare | {ref}
        try:
            body = self.visit(target, f"{name}-body")
        finally:
            self.bare = outer
        self.by_body.pop(f"<pending {ref}>", None)
        self.rules[name] = body
        return name

    def consuming(self, schema: Any, hint: str) -> str:
        """Visit a part that comes after a consumed token (inside an object or array): no left recursion there."""
        outer, self.bare = self.bare, frozenset()
        try:
            return self.visit(schema, hint)
        finally:
            self.bare = outer

    def object(self, schema: dict[str, Any], hint: str) -> str:
        props: dict[str, Any] = schema.get("properties") or {}
        if not props:
            return self.primitive("object")
        required = [k for k in props if k in set(schema.get("required", []))]
        optional = [k for k in props if k not in required]
        pairs = {k: f'{literal(k)} ":" space {self.consuming(v, f"{hint}-{k}")}' for k, v in props.items()}
        if required:
            body = ' "," space '.join(pairs[k] for k in required)
            body += "".join(f' ("," space {pairs[k]})?' for k in optional)
        else:  # all optional: any subset in declared order, possibly empty
            tails = [
                pairs[k] + "".join(f' ("," space {pairs[o]})?' for o in optional[i + 1 :])
                for i, k in enumerate(optional)
            ]
            body = "(" + " | ".join(f"({t})" for t in tails) + ")?"
        return self.add(hint, f'"{{" space {body} "}}" space')

    def array(self, schema: dict[str, Any], hint: str) -> str:
        prefix = [self.consuming(s, f"{hint}-{i}") for i, s in enumerate(schema.get("prefixItems") or [])]
        items = schema.get("items", True)
        item = None if items is False else self.consuming(items, f"{hint}-item")
        low, high = int(schema.get("minItems", 0)), schema.get("maxItems")
        high = None if high is None else int(high)
        if high is not None and low > high:
            raise Unsupported(f"minItems {low} above maxItems {high}")
        elements = prefix[: high if high is not None else len(prefix)]

        def after(i: int) -> str:
            """Elements from position i on, each preceded by a comma (position 0 has none)."""
            sep = "" if i == 0 else '"," space '
            if i < len(elements):
                rest = after(i + 1)
                part = f"{sep}{elements[i]}{' ' + rest if rest else ''}"
                return part if i < low else f"({part})?"
            if item is None or (high is not None and i >= high):
                return ""
            more_low = max(low - i, 0)
            more_high = None if high is None else high - i
            if i == 0:  # no prefix: the first item has no comma
                if more_high == 0:
                    return ""
                tail = repeat(f'"," space {item}', max(more_low - 1, 0), None if more_high is None else more_high - 1)
                first = f"{item} {tail}"
                return first if more_low > 0 else f"({first})?"
            return repeat(f'"," space {item}', more_low, more_high)

        body = after(0)
        return self.add(hint, f'"[" space {body} "]" space' if body else '"[" space "]" space')


def to_gbnf(schema: dict[str, Any], max_string: int | None = STRING_CHARS) -> str:
    """The GBNF grammar (``root ::= ...``) accepting JSON texts ``schema`` describes (the subset above);
    ``max_string`` caps strings without a maxLength (None: no cap)."""
    conv = Converter(schema, max_string)
    rules = {"root": conv.visit(schema, "top"), **conv.rules}
    return "".join(f"{name} ::= {body}\n" for name, body in rules.items())


def llama_grammar(text: str) -> Any:
    """A llama-cpp-python grammar for ``text`` (the provider caches it with its llama.cpp check)."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(text, verbose=False)


def check_with_llama(text: str, llama: Any) -> None:
    """Parse ``text`` against a loaded ``Llama``'s vocabulary; ValueError when llama.cpp rejects it.

    llama-cpp-python parses a grammar only when sampling starts and then hands llama.cpp a NULL sampler if the
    parse failed, which crashes the process: checked first, a bad grammar is a failed phase, never a crash.
    """
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(llama._model.vocab, text.encode("utf-8"), b"root")
    if not sampler:
        raise ValueError("llama.cpp rejected the output grammar (see its log above); the phase's schema cannot "
                         "be enforced: set structured = \"prompt\" for this model to go on without it")
    llama_cpp.llama_sampler_free(sampler)
