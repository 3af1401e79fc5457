"""Running one request through a loaded pipeline, whatever diffusers pipeline class it is."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from agentd import ToolError

from . import runtime
from .loader import LoadedPipeline
from .request import ImageRequest

log = logging.getLogger(__name__)


class _Cancelled(Exception):
    """Raised from the step callback to stop a denoising loop whose call was cancelled or timed out."""


@dataclass
class Generated:
    """The image and what happened while making it."""

    image: Any  # PIL.Image.Image
    seconds: float
    memory: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    nsfw_flagged: bool = False


def generate(loaded: LoadedPipeline, request: ImageRequest, cancel: threading.Event) -> Generated:
    """Generate one image; stops between denoising steps when ``cancel`` is set."""
    import torch

    pipe = loaded.pipe
    accepted = set(inspect.signature(pipe.__call__).parameters)
    notes: list[str] = []
    kwargs: dict[str, Any] = {
        "prompt": request.prompt,
        "width": request.width,
        "height": request.height,
        "num_inference_steps": request.steps,
        # A CPU generator makes the seed mean the same starting noise on every device.
        "generator": torch.Generator("cpu").manual_seed(request.seed),
        "output_type": "pil",
    }
    if "guidance_scale" in accepted:
        kwargs["guidance_scale"] = request.guidance
    elif request.guidance != 0:
        notes.append(f"{loaded.pipeline} takes no guidance; it was ignored")
    if request.negative_prompt:
        if "negative_prompt" in accepted:
            kwargs["negative_prompt"] = request.negative_prompt
        else:
            notes.append(f"{loaded.pipeline} takes no negative prompt; it was ignored")
    if "callback_on_step_end" in accepted:
        kwargs["callback_on_step_end"] = _stop_when(cancel)
    kwargs = {k: v for k, v in kwargs.items() if k in accepted or k == "prompt"}
    if cancel.is_set():
        raise ToolError("image generation was cancelled before it started")
    runtime.reset_peak(loaded.device)
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            output = pipe(**kwargs)
    except (ValueError, RuntimeError, IndexError) as exc:
        if runtime.is_out_of_memory(exc):
            raise  # the tool reports it with memory figures and advice
        log.info("%s failed", loaded.pipeline, exc_info=True)
        raise ToolError(
            f"{loaded.pipeline} failed at {request.width}x{request.height}, {request.steps} steps "
            f"({loaded.scheduler}): {type(exc).__name__}: {exc}; try more steps or another size"
        ) from None
    except _Cancelled:
        raise ToolError(
            f"image generation was cancelled (timed out or stopped) before {request.steps} steps"
        ) from None
    seconds = time.perf_counter() - started
    memory = runtime.memory_report(loaded.device)
    images = getattr(output, "images", None) or (output[0] if isinstance(output, tuple) else None)
    if not images:
        raise ToolError(f"{loaded.pipeline} returned no image; it may not be a text-to-image pipeline")
    flagged = getattr(output, "nsfw_content_detected", None)
    nsfw = bool(flagged and flagged[0])
    if nsfw:
        notes.append("the model's safety checker flagged the image and blanked it")
    return Generated(
        image=images[0], seconds=round(seconds, 3), memory=memory, notes=notes, nsfw_flagged=nsfw
    )


def _stop_when(cancel: threading.Event) -> Any:
    def on_step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if cancel.is_set():
            raise _Cancelled
        return callback_kwargs

    return on_step_end
