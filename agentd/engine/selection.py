"""Tool selection: a small model is offered only the tools relevant to its goal.

Tools the goal names (any registered name, exact or nearly: ``fs.read_text_file``, ``run python``) or asks for
by a goal phrase always come first; the rest are ranked by the ``rank_tools`` hook (the memory plugin ranks by
embedding similarity of goal and description) or, when no plugin ranks, by a lexical overlap computed here.
The set is capped at ``loop.max_tools`` and kept in registration order, so the prompt's tool list is stable.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

ALWAYS = ("final_answer",)  # how a run hands over its answer: every run may need it
_WORD = re.compile(r"[a-z0-9]+")
_IDENT = re.compile(r"[A-Za-z][\w.\-]*[_.][\w.\-]*\w")  # identifier-like words: read_file, fs.read_text_file


def named_tools(goal: str, tools: Any) -> list[str]:
    """Tools the goal names: their registered name, exactly or nearly, or one of their goal phrases."""
    names = tools.names()
    found = [n for n in tools.requested_in(goal)]
    for token in _IDENT.findall(goal):
        token = token.rstrip(".")
        match = token if token in names else None
        if match is None:
            close = difflib.get_close_matches(token, names, n=1, cutoff=0.85)
            match = close[0] if close else None
        if match and match not in found:
            found.append(match)
    return found


def lexical_scores(goal: str, tools: Any) -> dict[str, float]:
    """Word overlap of goal and tool name + description (a fallback when no plugin ranks by meaning)."""
    goal_words = set(stems(goal))
    scores = {}
    for name, tool in tools.tools.items():
        words = set(stems(name.replace("_", " ").replace(".", " ") + " " + tool.description))
        scores[name] = len(goal_words & words) / math.sqrt(len(words) or 1)
    return scores


# Words that say nothing about what a goal is about (they match every tool's description).
_PLAIN = frozenset({
    "the", "and", "for", "with", "from", "that", "this", "these", "those", "what", "which", "who", "whom", "whose",
    "when", "where", "why", "how", "are", "was", "were", "is", "be", "been", "being", "have", "has", "had", "does",
    "did", "can", "could", "would", "should", "will", "shall", "may", "might", "must", "not", "you", "your", "our",
    "their", "them", "they", "its", "his", "her", "she", "him", "there", "here", "into", "onto", "over", "under",
    "about", "above", "below", "after", "before", "than", "then", "also", "just", "only", "very", "much", "many",
    "more", "most", "some", "any", "each", "every", "all", "both", "few", "other", "such", "own", "same", "too",
    "out", "off", "again", "once", "given", "specific", "based", "using", "use", "used", "get", "gets", "want",
    "need", "like", "please", "tell", "find", "give", "make", "made", "one", "two", "three"
})
_PLAIN_STEMS = frozenset(w[:5] for w in _PLAIN)


def matching_tools(goal: str, tools: Any) -> list[str]:
    """The tools that share a word (cut to five letters, common words left out) with the goal: in their name,
    description or arguments' names and descriptions. None: no tool is about anything the goal says, so the plan
    request leads with the answer option (loop.direct_answers)."""
    goal_words = set(stems(goal)) - _PLAIN_STEMS
    return [name for name, tool in tools.tools.items() if goal_words & set(stems(_tool_text(name, tool)))]


def _tool_text(name: str, tool: Any) -> str:
    props = tool.parameters.get("properties") or {}
    args = [f"{arg} {spec.get('description', '') if isinstance(spec, dict) else ''}" for arg, spec in props.items()]
    return " ".join([name.replace("_", " ").replace(".", " "), tool.description, *args]).replace("_", " ")


def stems(text: str, skip: frozenset[str] = frozenset()) -> list[str]:
    """Lower-case words cut to five letters: "writes", "written" and "write" meet as "write"/"writt"; words of
    two letters or fewer, and the words in ``skip``, left out."""
    return [w[:5] for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in skip]


def select_tools(goal: str, tools: Any, host: Any, config: Any, cap: int) -> list[str]:
    """The names of the tools offered for this goal, in registration order."""
    names = tools.names()
    if len(names) <= cap:
        return names
    chosen = named_tools(goal, tools) + [n for n in ALWAYS if n in tools]
    scores = None
    for _plugin, result in host.call_each("rank_tools", goal=goal, tools=list(tools.tools.values()), config=config):
        if isinstance(result, dict) and result:
            scores = result
            break
    if scores is None:
        scores = lexical_scores(goal, tools)
    for name in sorted(names, key=lambda n: -float(scores.get(n, 0.0))):
        if len(chosen) >= cap:
            break
        if name not in chosen:
            chosen.append(name)
    return [n for n in names if n in chosen]
