"""The generate_image tool's body: validate, get the warm pipeline, generate, save, report."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from agentd import ToolContext, ToolError, ToolResult, __version__

from . import png, runtime
from .generate import Generated, generate
from .loader import LoadedPipeline, load_pipeline, resolve_model
from .request import ImageRequest, build_request, output_path
from .service import UseInfo, service_for
from .settings import ImageSettings, parse_settings


def run_generate_image(ctx: ToolContext, home: Path | None, path: str = "", **arguments: Any) -> ToolResult:
    """Everything ``generate_image`` does; ``arguments`` are the tool's image arguments."""
    settings = parse_settings(ctx.settings)
    request = build_request(settings, **arguments)
    target = output_path(ctx, settings, request, path)
    source = resolve_model(settings, home)  # fail fast, before queueing behind another call
    # Everything that changes what is loaded; another key releases the loaded pipeline first.
    key = (
        source.location,
        settings.device,
        settings.dtype,
        settings.variant,
        settings.cache_dir,
        settings.scheduler,
        settings.gpu_memory_fraction,
        settings.cpu_threads,
    )
    service = service_for(key, functools.partial(load_pipeline, settings, home), _release)
    try:
        generated, use = service.use(
            lambda loaded: _generate_once(loaded, request, ctx), settings.keep_warm_s, ctx.cancel
        )
    except (RuntimeError, MemoryError) as exc:  # torch's OutOfMemoryError is a RuntimeError
        if runtime.is_out_of_memory(exc):
            memory = runtime.memory_report(runtime.choose_device(settings.device))
            return ToolResult(
                error=_oom_message(exc, settings, request),
                data={"out_of_memory": True, "gpu_memory_after_release": memory, **request.to_dict()},
            )
        raise
    loaded, made = generated
    return _save_and_report(ctx, target, settings, request, loaded, made, use)


def _generate_once(
    loaded: LoadedPipeline, request: ImageRequest, ctx: ToolContext
) -> tuple[LoadedPipeline, Generated]:
    return loaded, generate(loaded, request, ctx.cancel)


def _release(loaded: LoadedPipeline) -> None:
    device = loaded.device
    loaded.pipe = None  # drop the only reference before asking the allocator to give memory back
    runtime.release_memory(device)


def metadata(request: ImageRequest, loaded: LoadedPipeline) -> dict[str, Any]:
    """What the PNG's text chunks and the journal record about how the image was made."""
    meta: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed,
        "model": loaded.model,
        "pipeline": loaded.pipeline,
        "scheduler": loaded.scheduler,
        "steps": request.steps,
        "guidance": request.guidance,
        "width": request.width,
        "height": request.height,
        "device": loaded.device,
        "dtype": loaded.dtype,
    }
    return meta


def _save_and_report(
    ctx: ToolContext,
    target: Path,
    settings: ImageSettings,
    request: ImageRequest,
    loaded: LoadedPipeline,
    made: Generated,
    use: UseInfo,
) -> ToolResult:
    meta = metadata(request, loaded)
    text = {
        **meta,
        "software": f"agentd {__version__} (agentd_image)",
        "parameters": png.parameters_line(meta),
    }
    try:
        png.save_png(made.image, target, text)
    except OSError as exc:
        raise ToolError(f"could not save the image to {target.name}: {exc.strerror or exc}") from None
    relative = str(target.relative_to(ctx.workspace.resolve()))
    width, height = made.image.size
    data: dict[str, Any] = {
        **meta,
        "path": relative,
        "seed_was_random": request.seed_was_random,
        "image_size": [width, height],
        "cold_start": use.cold_start,
        "load_seconds": loaded.load_seconds if use.cold_start else 0.0,
        "generate_seconds": made.seconds,
        "waited_seconds": use.waited_s,
        "released_after": use.released_after,
        "nsfw_flagged": made.nsfw_flagged,
    }
    if made.memory:
        data["gpu_memory"] = made.memory
        if use.released_after:
            data["gpu_memory_after_release"] = runtime.memory_report(loaded.device)
    if made.notes:
        data["notes"] = made.notes
    output = (
        f"saved a {width}x{height} image to {relative} (seed {request.seed}, {request.steps} steps, "
        f"model {loaded.model})"
    )
    if made.notes:
        output += "; note: " + "; ".join(made.notes)
    return ToolResult(output=output, artifacts=[relative], data=data)


def _oom_message(exc: BaseException, settings: ImageSettings, request: ImageRequest) -> str:
    smaller = f"{max(64, request.width // 2 // 8 * 8)}x{max(64, request.height // 2 // 8 * 8)}"
    return (
        f"out of memory generating a {request.width}x{request.height} image ({type(exc).__name__}); the "
        f"pipeline was released. Try a smaller size such as {smaller}; if a chat model shares the GPU, set "
        f"plugins.image.keep_warm_s = 0 or device = 'cpu'"
        + (
            f" (gpu_memory_fraction is {settings.gpu_memory_fraction:g})"
            if settings.gpu_memory_fraction
            else ""
        )
    )
