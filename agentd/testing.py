"""Test helpers for agentd and its plugins: a scripted chat model.

``ScriptedChatModel`` is the fake for fast tests; its real counterpart (ChatLlamaCpp over the bundled GGUF) is
exercised by the integration tests. Replies are served in order; a reply may be a string, a dict (sent as JSON)
or a callable taking the prompt text. ``rules`` answer by regular expression on the last message instead, which
suits concurrent runs where order is unknown.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

Reply = str | dict | Callable[[str], Any]


class ScriptedModelExhausted(RuntimeError):
    """The script ran out of replies: the test drove the loop further than it expected."""


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers from a script; records every prompt and keyword argument it saw."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    replies: list[Any] = Field(default_factory=list)
    rules: list[tuple[str, Any]] = Field(default_factory=list)
    default: Any = None
    delay_s: float = 0.0
    keep_calls: int | None = None  # a long-lived (daemon) scripted model keeps only the latest calls
    # Report each reply as tokens through LangChain's callbacks, as a streaming model does (live progress);
    # off: one whole reply, as the peers' scripted models in benchmarks/peers.py give theirs.
    stream_tokens: bool = True
    _queue: deque = PrivateAttr(default_factory=deque)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _calls: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    def model_post_init(self, __context: Any) -> None:
        self._queue.extend(self.replies)
        if self.keep_calls is not None:
            self._calls = deque(maxlen=self.keep_calls)  # type: ignore[assignment]

    @property
    def calls(self) -> list[dict[str, Any]]:
        return list(self._calls)

    def enqueue(self, replies: list[Reply]) -> ScriptedChatModel:
        with self._lock:
            self._queue.extend(replies)
        return self

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = "\n".join(str(m.content) for m in messages)
        last = str(messages[-1].content) if messages else ""
        reply = self._next(last)
        if callable(reply):
            reply = reply(prompt)
        text = reply if isinstance(reply, str) else json.dumps(reply)
        if self.stream_tokens:
            self._stream_tokens(text, run_manager)
        with self._lock:
            self._calls.append({"messages": messages, "prompt": prompt, "kwargs": kwargs, "reply": text})
        usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": max(1, len(text) // 4)}
        message = AIMessage(content=text)
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"token_usage": usage})

    def _stream_tokens(self, text: str, run_manager: CallbackManagerForLLMRun | None) -> None:
        """Report the reply as tokens (4 characters each) spread over ``delay_s``, like a model generating it."""
        import time

        tokens = [text[i : i + 4] for i in range(0, len(text), 4)] or [""]
        for token in tokens:
            if self.delay_s:
                time.sleep(self.delay_s / len(tokens))
            if run_manager is not None and token:
                run_manager.on_llm_new_token(token)

    def _next(self, last: str) -> Any:
        for pattern, reply in self.rules:
            if re.search(pattern, last, re.S):
                return reply
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.default is not None:
            return self.default
        raise ScriptedModelExhausted(f"no scripted reply left for a prompt ending: {last[-200:]!r}")


def make_test_app(
    home: Any,
    replies: list[Reply] | None = None,
    *,
    rules: list[tuple[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
    extra_plugins: tuple[Any, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[Any, ScriptedChatModel]:
    """An App on ``home`` whose default model is a ScriptedChatModel; returns (app, model).

    ``settings`` are dotted config overrides, e.g. ``{"loop.max_steps": 3, "plugins.web": {...}}``; the
    feedback phase asks the (scripted) model after every step and every tool is offered, unless they set
    ``loop.feedback`` or ``loop.max_tools``.
    """
    from pathlib import Path

    from .app import make_app
    from .config import load_config
    from .models.registry import ModelHandle

    # A script answers every feedback turn and names its tools, so the model decides every feedback and sees
    # every tool, unless a test sets ``loop.feedback`` / ``loop.max_tools`` itself.
    overrides = {"loop.feedback": "model", "loop.max_tools": 64} | (settings or {})
    config = load_config(home=Path(home), env=env or {}, overrides=overrides)
    app = make_app(config, extra_plugins=extra_plugins)
    model = ScriptedChatModel(replies=list(replies or []), rules=list(rules or []))
    name, _ = config.model_config_for(None)
    handle = ModelHandle(name=name, chat=model, structured="prompt", provider="scripted", direct=True)
    app.models._handles[name] = handle
    return app, model


def plan(*steps: tuple[str, str]) -> dict[str, Any]:
    """A plan reply: ``plan(("write the file", "write_file"))``."""
    return {"steps": [{"intent": intent, "tool": tool} for intent, tool in steps]}


def call(tool: str, **args: Any) -> dict[str, Any]:
    """An act reply: ``call("write_file", path="a.txt", content="x")``."""
    return {"tool": tool, "args": args}


def feedback(decision: str, summary: str = "ok", final_answer: str = "") -> dict[str, Any]:
    """A feedback reply: ``feedback("done", final_answer="...")``."""
    return {"decision": decision, "summary": summary, "final_answer": final_answer}
