"""JSON Schema → GBNF, checked two ways: llama.cpp's own parser (against the bundled model's vocabulary)
accepts every grammar, and a small GBNF matcher (below; the test's oracle) accepts the JSON texts the schema
allows and rejects the others.

The real counterpart, decoding with these grammars on the bundled model, is tests/integration/test_real_model.py.
"""

from __future__ import annotations

import json
import re
from functools import cache

import pytest

from agentd.engine import gbnf, phases
from agentd.testing import make_test_app


# -- a GBNF matcher for the constructs gbnf.py emits ------------------------------------------------
def parse_grammar(text: str) -> dict[str, object]:
    rules = {}
    for line in text.strip().splitlines():
        name, body = line.split(" ::= ", 1)
        expr, rest = _alternatives(body, 0)
        assert rest == len(body), f"unparsed grammar text in {line!r}"
        rules[name] = expr
    return rules


def _skip(s: str, i: int) -> int:
    while i < len(s) and s[i] == " ":
        i += 1
    return i


def _alternatives(s: str, i: int):
    options = []
    while True:
        seq, i = _sequence(s, i)
        options.append(seq)
        i = _skip(s, i)
        if i < len(s) and s[i] == "|":
            i += 1
            continue
        return ("alt", options), i


def _sequence(s: str, i: int):
    items = []
    while True:
        i = _skip(s, i)
        if i >= len(s) or s[i] in "|)":
            return ("seq", items), i
        item, i = _atom(s, i)
        item, i = _postfix(s, i, item)
        items.append(item)


def _unescape(chunk: str) -> str:
    return re.sub(r"\\(x[0-9A-Fa-f]{2}|.)", lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x"
                  else {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), chunk)


def _atom(s: str, i: int):
    if s[i] == '"':
        j = i + 1
        while s[j] != '"':
            j += 2 if s[j] == "\\" else 1
        return ("lit", _unescape(s[i + 1 : j])), j + 1
    if s[i] == "[":
        j = i + 1
        while s[j] != "]":
            j += 2 if s[j] == "\\" else 1
        body = s[i + 1 : j]
        negate = body.startswith("^")
        chars = _unescape(body[1:] if negate else body)
        return ("class", negate, re.compile("[" + re.escape(chars).replace(r"\-", "-") + "]")), j + 1
    if s[i] == "(":
        expr, j = _alternatives(s, i + 1)
        assert s[j] == ")"
        return expr, j + 1
    m = re.compile(r"[a-zA-Z0-9-]+").match(s, i)
    assert m, f"unexpected grammar text at {s[i:i + 20]!r}"
    return ("ref", m.group()), m.end()


def _postfix(s: str, i: int, item):
    if i < len(s) and s[i] in "?*+":
        low, high = {"?": (0, 1), "*": (0, None), "+": (1, None)}[s[i]]
        return ("rep", item, low, high), i + 1
    m = re.compile(r"\{(\d+)(,(\d*))?\}").match(s, i)
    if m:
        low = int(m.group(1))
        high = low if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
        return ("rep", item, low, high), m.end()
    return item, i


def accepts(grammar: str, text: str) -> bool:
    rules = parse_grammar(grammar)

    @cache
    def ends(expr_id: int, pos: int) -> frozenset[int]:
        return frozenset(match(exprs[expr_id], pos))

    exprs: dict[int, object] = {}

    def m(expr, pos: int) -> frozenset[int]:
        exprs[id(expr)] = expr
        return ends(id(expr), pos)

    def match(expr, pos: int) -> set[int]:
        kind = expr[0]
        if kind == "lit":
            return {pos + len(expr[1])} if text.startswith(expr[1], pos) else set()
        if kind == "class":
            if pos >= len(text):
                return set()
            hit = bool(expr[2].match(text[pos]))
            return {pos + 1} if hit != expr[1] else set()
        if kind == "ref":
            return set(m(rules[expr[1]], pos))
        if kind == "alt":
            return set().union(*(m(option, pos) for option in expr[1]))
        if kind == "seq":
            here = {pos}
            for item in expr[1]:
                here = set().union(*(m(item, p) for p in here)) if here else set()
            return here
        _, item, low, high = expr
        reached, frontier, count = set(), {pos}, 0
        while frontier and (high is None or count < high):
            if count >= low:
                reached |= frontier
            nxt = set().union(*(m(item, p) for p in frontier)) - (frontier if high is None else set())
            frontier, count = nxt, count + 1
        if count >= low:
            reached |= frontier
        return reached

    return len(text) in m(("ref", "root"), 0)


# -- the converter ----------------------------------------------------------------------------------
def test_strings_are_json_strings_without_raw_control_characters():
    grammar = gbnf.to_gbnf({"type": "string"})
    assert accepts(grammar, '"a b\\n\\"c\\u00e9"')
    assert not accepts(grammar, '"line one\nline two"')  # the runaway-newline failure of the bundled converter
    assert not accepts(grammar, '"unclosed')


def test_lengths_counts_and_whitespace_are_bounded():
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 3},
                                "minItems": 1, "maxItems": 2}},
        "required": ["tags"],
    }
    grammar = gbnf.to_gbnf(schema)
    assert accepts(grammar, '{"tags": ["abc", "d"]}') and accepts(grammar, '{"tags":["x"]}')
    assert not accepts(grammar, '{"tags": []}')  # minItems
    assert not accepts(grammar, '{"tags": ["a", "b", "c"]}')  # maxItems
    assert not accepts(grammar, '{"tags": ["abcd"]}') and not accepts(grammar, '{"tags": [""]}')  # lengths
    assert not accepts(grammar, '{\n  "tags": ["a"]}')  # no newlines between tokens
    assert "{1,3}" in grammar and "{0,1}" not in grammar


def test_enum_const_anyof_and_numbers():
    schema = {"anyOf": [
        {"type": "object", "properties": {"tool": {"const": "a"}, "n": {"type": "integer"}}, "required": ["tool", "n"]},
        {"type": "object", "properties": {"tool": {"enum": ["b", "c"]}, "x": {"type": ["number", "null"]}},
         "required": ["tool"]},
    ]}
    grammar = gbnf.to_gbnf(schema)
    for good in ('{"tool": "a", "n": -12}', '{"tool": "c"}', '{"tool": "b", "x": 1.5e3}', '{"tool": "b", "x": null}'):
        assert accepts(grammar, good), good
    for bad in ('{"tool": "a"}', '{"tool": "d"}', '{"tool": "a", "n": 1.5}', '{"n": 1, "tool": "a"}',
                '{"tool": "a", "n": 1, "extra": 2}'):
        assert not accepts(grammar, bad), bad


def test_optional_properties_any_subset_in_order():
    schema = {"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"type": "boolean"}}}
    grammar = gbnf.to_gbnf(schema)
    for good in ("{}", '{"a": true}', '{"b": false}', '{"a": true, "b": false}'):
        assert accepts(grammar, good), good
    assert not accepts(grammar, '{"b": true, "a": true}')


def test_prefix_items_constrain_the_first_elements_only():
    schema = {"type": "array", "prefixItems": [{"const": 1}], "items": {"type": "integer"}, "minItems": 1,
              "maxItems": 3}
    grammar = gbnf.to_gbnf(schema)
    assert accepts(grammar, "[1]") and accepts(grammar, "[1, 5, 6]")
    assert not accepts(grammar, "[5]") and not accepts(grammar, "[1, 2, 3, 4]") and not accepts(grammar, "[]")


def test_refs_and_free_values():
    schema = {"$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}},
              "type": "object", "properties": {"p": {"$ref": "#/$defs/pt"}, "any": {}}, "required": ["p", "any"]}
    grammar = gbnf.to_gbnf(schema)
    assert accepts(grammar, '{"p": {"x": 1}, "any": {"k": [1, "two", null, true]}}')
    assert not accepts(grammar, '{"p": {"y": 1}, "any": 1}')


# Schema parts with no safe grammar: each becomes "any JSON value" with a warning, never a grammar llama.cpp
# rejects (llama-cpp-python then crashes the process) or expands without end.
ODD_SCHEMAS = {
    "remote ref": {"$ref": "https://example.com/schema"},
    "left recursion": {"$defs": {"n": {"anyOf": [{"$ref": "#/$defs/n"}, {"type": "integer"}]}}, "$ref": "#/$defs/n"},
    "self ref": {"$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"},
    "min length above max": {"type": "string", "minLength": 5, "maxLength": 3},
    "min items above max": {"type": "array", "minItems": 2, "maxItems": 1},
}


@pytest.mark.parametrize("name", ODD_SCHEMAS)
def test_schema_parts_without_a_safe_grammar_allow_any_value(name, caplog):
    grammar = gbnf.to_gbnf(ODD_SCHEMAS[name])
    assert "no safe grammar" in caplog.text
    assert accepts(grammar, '{"any": [1, "json"]}') and accepts(grammar, "7")
    assert parses_in_llama_cpp(grammar)


def test_recursion_after_a_token_is_kept():
    tree = {"$defs": {"t": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/t"}}},
                            "required": ["kids"]}}, "$ref": "#/$defs/t"}
    grammar = gbnf.to_gbnf(tree)
    assert accepts(grammar, '{"kids": [{"kids": []}, {"kids": [{"kids": []}]}]}')
    assert not accepts(grammar, '{"kids": [1]}')


def test_a_property_named_like_the_root_does_not_take_its_place():
    grammar = gbnf.to_gbnf({"type": "object", "properties": {"_": {"enum": ["a", "b"]}}, "required": ["_"]})
    assert accepts(grammar, '{"_": "a"}') and not accepts(grammar, '"a"')


def test_file_names_that_are_not_utf8_are_escaped():
    name = "caf\udcff.txt"  # how Python hands over a file name with an invalid byte
    grammar = gbnf.to_gbnf({"enum": [name]})
    grammar.encode("utf-8")  # llama.cpp takes the grammar as UTF-8
    assert accepts(grammar, '"caf\\udcff.txt"') and json.loads('"caf\\udcff.txt"') == name
    assert parses_in_llama_cpp(grammar)


def test_x_prefix_makes_a_string_start_with_a_text():
    grammar = gbnf.to_gbnf({"type": "string", "x-prefix": 'say "391"', "maxLength": 20})
    assert accepts(grammar, '"say \\"391\\""') and accepts(grammar, '"say \\"391\\" is it"')
    assert not accepts(grammar, '"it is 391"')
    short = gbnf.to_gbnf({"type": "string", "x-prefix": "abcdef", "maxLength": 3})  # never longer than allowed
    assert accepts(short, '"abc"') and not accepts(short, '"abcdef"')


@pytest.fixture(scope="module")
def vocab_model():
    llama_cpp = pytest.importorskip("llama_cpp")
    from agentd.models.registry import bundled_model_path

    path = bundled_model_path()
    if path is None:
        pytest.skip("the bundled model is not installed")
    return llama_cpp.Llama(str(path), vocab_only=True, verbose=False)


_VOCAB: list = []  # the vocab-only model, set for every test by the fixture below


def parses_in_llama_cpp(text: str) -> bool:
    try:
        gbnf.check_with_llama(text, _VOCAB[0])
        return True
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _llama_vocab(request, vocab_model):
    _VOCAB[:] = [vocab_model]
    yield
    _VOCAB.clear()


def test_a_grammar_llama_cpp_rejects_is_an_error_not_a_crash(vocab_model):
    assert not parses_in_llama_cpp("root ::= undefined-rule\n")
    assert not parses_in_llama_cpp("root ::= root \"x\" | \"y\"\n")  # left recursion
    with pytest.raises(ValueError, match="llama.cpp rejected the output grammar"):
        gbnf.check_with_llama("root ::= (\n", vocab_model)


def test_llama_cpp_parses_every_phase_grammar(tmp_path):
    app, _ = make_test_app(tmp_path)
    tools = app.tools
    schemas = [
        phases.plan_schema(tools, 3),
        phases.plan_schema(tools, 3, first=["run_python"]),
        phases.act_schema(tools, "write_file", ["a.txt"]),
        phases.feedback_schema(["done", "replan", "give_up"], lead="391"),
        phases.CRITIQUE_SCHEMA,
        *(tool.parameters for tool in tools.tools.values()),
    ]
    for schema in schemas:
        text = gbnf.to_gbnf(schema)
        assert text.startswith("root ::= ") and parses_in_llama_cpp(text), text


def test_phase_grammars_accept_what_the_validators_accept(tmp_path):
    app, _ = make_test_app(tmp_path)
    tools = app.tools
    plan = gbnf.to_gbnf(phases.plan_schema(tools, 3, first=["run_python"]))
    assert accepts(plan, json.dumps({"steps": [{"intent": "compute it", "tool": "run_python"},
                                               {"intent": "answer", "tool": "final_answer"}]}))
    assert not accepts(plan, json.dumps({"steps": [{"intent": "look", "tool": "list_files"}]}))
    feedback = gbnf.to_gbnf(phases.feedback_schema(["done", "replan", "give_up"], lead="391"))
    assert accepts(feedback, json.dumps({"decision": "done", "summary": "s", "final_answer": "391"}))
    assert accepts(feedback, json.dumps({"decision": "replan", "summary": "s", "final_answer": ""}))
    assert not accepts(feedback, json.dumps({"decision": "done", "summary": "s", "final_answer": "17 * 23"}))
    act = gbnf.to_gbnf(phases.act_schema(tools.subset(["write_file"]), "write_file", ["a.txt"]))
    assert accepts(act, json.dumps({"tool": "write_file", "args": {"path": "a.txt", "content": "x\ny"}}))
    assert not accepts(act, json.dumps({"tool": "write_file", "args": {"path": "b.txt", "content": "x"}}))


def test_strings_without_max_length_are_capped_and_a_schema_may_raise_or_lift_the_cap():
    grammar = gbnf.to_gbnf({"type": "string"})
    assert accepts(grammar, json.dumps("x" * gbnf.STRING_CHARS))
    assert not accepts(grammar, json.dumps("x" * (gbnf.STRING_CHARS + 1)))  # a runaway string stops here
    wider = gbnf.to_gbnf({"type": "string", "maxLength": gbnf.STRING_CHARS + 50})
    assert accepts(wider, json.dumps("x" * (gbnf.STRING_CHARS + 50)))
    assert "char*" in gbnf.to_gbnf({"type": "string", "maxLength": gbnf.LONG_STRING + 1})  # long text: no bound
    assert accepts(gbnf.to_gbnf({"type": "string"}, max_string=None), json.dumps("x" * 1000))


def test_built_in_long_text_arguments_are_not_capped(tmp_path):
    app, _ = make_test_app(tmp_path)
    act = gbnf.to_gbnf(phases.act_schema(app.tools.subset(["write_file"]), "write_file"))
    assert accepts(act, json.dumps({"tool": "write_file", "args": {"path": "a.txt", "content": "y" * 1000}}))
    assert not accepts(act, json.dumps({"tool": "write_file", "args": {"path": "p" * 300, "content": "y"}}))
    app.close()
