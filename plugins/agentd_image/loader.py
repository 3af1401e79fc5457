"""Finding the model (a local folder or the local Hugging Face cache, never the network) and loading it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd import ToolError

from . import runtime
from .settings import NO_MODEL, ImageSettings

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt")


@dataclass
class ModelSource:
    """Where a configured model lives: ``dir`` (a folder with model_index.json) or ``hub`` (a cached repo id)."""

    kind: str
    location: str

    def describe(self) -> str:
        return (
            f"folder {self.location}" if self.kind == "dir" else f"{self.location} in the Hugging Face cache"
        )


@dataclass
class LoadedPipeline:
    """A pipeline on its device, with what is worth reporting about it."""

    pipe: Any
    model: str
    device: str
    dtype: str
    pipeline: str
    scheduler: str
    load_seconds: float


def go_offline() -> None:
    """Make every Hugging Face library in this process refuse the network (set before they are imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


def resolve_model(settings: ImageSettings, home: Path | None = None) -> ModelSource:
    """Find the configured model without loading it; a ToolError says what is wrong and how to fix it."""
    model = settings.model.strip()
    if not model:
        raise ToolError(NO_MODEL)
    path = Path(model).expanduser()
    if not path.is_absolute() and home is not None and (home / path).exists():
        path = home / path
    if path.is_file():
        if path.suffix in SINGLE_FILE_SUFFIXES:
            raise ToolError(
                f"image model {model!r} is a single checkpoint file; agentd loads diffusers pipeline folders. "
                "Convert it (diffusers' from_single_file(...).save_pretrained(folder)) and point model to the folder"
            )
        raise ToolError(f"image model {model!r} is a file; point plugins.image.model to a pipeline folder")
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ToolError(
                f"image model folder {str(path)!r} has no model_index.json, so it is not a diffusers pipeline; "
                "point plugins.image.model to the folder saved with save_pretrained() or downloaded from the Hub"
            )
        return ModelSource("dir", str(path.resolve()))
    if REPO_ID.match(model) and not model.startswith("."):
        if _in_hf_cache(model, settings.cache_dir):
            return ModelSource("hub", model)
        raise ToolError(
            f"image model {model!r} is neither a folder nor in the local Hugging Face cache "
            f"({settings.cache_dir or _default_cache()}); agentd never downloads models: on a machine with "
            f"internet run `hf download {model}` and copy the cache here, or set model to a folder"
        )
    where = f" (looked in {home / path} too)" if home is not None and not path.is_absolute() else ""
    raise ToolError(f"image model folder {model!r} does not exist{where}; fix plugins.image.model")


def _in_hf_cache(repo_id: str, cache_dir: str) -> bool:
    go_offline()
    if importlib.util.find_spec("huggingface_hub") is None:
        return False
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "model_index.json", cache_dir=cache_dir or None)
    return isinstance(found, str)


def _default_cache() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    hf_home = os.environ.get("HF_HOME") or str(Path("~/.cache/huggingface").expanduser())
    return str(Path(hf_home) / "hub")


def load_pipeline(settings: ImageSettings, home: Path | None = None) -> LoadedPipeline:
    """Load the configured pipeline, offline only, onto the chosen device with the chosen dtype."""
    source = resolve_model(settings, home)
    go_offline()
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # bars on stderr are noise in the daemon log and the CLI
    device = runtime.choose_device(settings.device)
    dtype = runtime.choose_dtype(device, settings.dtype)
    kwargs: dict[str, Any] = {"local_files_only": True, _dtype_keyword(): getattr(torch, dtype)}
    if settings.variant:
        kwargs["variant"] = settings.variant
    if settings.cache_dir and source.kind == "hub":
        kwargs["cache_dir"] = settings.cache_dir
    started = time.perf_counter()
    try:
        pipe = DiffusionPipeline.from_pretrained(source.location, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, ImportError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ToolError(
            f"could not load image model {settings.model!r} from {source.describe()}: {first}. "
            "Check that every component's files are there (a partial download or a missing variant "
            "causes this) and that diffusers supports the pipeline"
        ) from None
    if settings.scheduler:
        pipe.scheduler = _scheduler(settings.scheduler, pipe.scheduler)
    runtime.limit_gpu_memory(device, settings.gpu_memory_fraction)
    if device == "cpu" and settings.cpu_threads:
        torch.set_num_threads(settings.cpu_threads)
    try:
        pipe = pipe.to(device)
    except BaseException:
        del pipe  # a half-moved pipeline would pin device memory until the next collection
        runtime.release_memory(device)
        raise
    pipe.set_progress_bar_config(disable=True)
    return LoadedPipeline(
        pipe=pipe,
        model=settings.model,
        device=device,
        dtype=dtype,
        pipeline=type(pipe).__name__,
        scheduler=type(pipe.scheduler).__name__,
        load_seconds=round(time.perf_counter() - started, 3),
    )


def _dtype_keyword() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype``; use the new name where this diffusers knows it."""
    try:
        from diffusers.utils import deprecation_utils
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _scheduler(name: str, current: Any) -> Any:
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_config"):
        raise ToolError(
            f"plugins.image.scheduler = {name!r} is not a diffusers scheduler class; "
            "try DPMSolverMultistepScheduler, EulerDiscreteScheduler or DDIMScheduler"
        )
    return cls.from_config(current.config)
