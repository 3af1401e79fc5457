"""Image generation: a ``generate_image`` tool over a local diffusers pipeline, strictly offline.

Heavy dependencies (torch, diffusers, transformers, pillow) are an optional extra, ``pip install
'agentd-daemon[image]'``; without them the tool is not registered and :func:`unavailable_reason` says why. The
pipeline loads on first use, stays warm for ``keep_warm_s`` seconds and is then released; calls queue for it
one at a time. Settings: ``[plugins.image]`` (see docs/image.md). This module imports only the standard
library and agentd; everything else loads inside the tool.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentd import ToolContext, ToolError, ToolResult, hookimpl

AGENTD_API = "1.0"
EXTRA = "image"
REQUIRED = (
    ("torch", "torch"),
    ("diffusers", "diffusers"),
    ("transformers", "transformers"),
    ("PIL", "pillow"),
)

log = logging.getLogger(__name__)


def unavailable_reason(config: Any = None) -> str | None:
    """Why generate_image is not offered here, or None when it is.

    Missing dependencies always count; with a ``config``, so do invalid ``[plugins.image]`` settings and an
    unset ``model`` (a tool that could only fail would waste the agent's steps). A configured model that
    cannot be found is *not* a reason: it may appear later, and the call then says what is wrong. Cheap:
    looks for packages without importing them.
    """
    missing = [dist for module, dist in REQUIRED if importlib.util.find_spec(module) is None]
    if missing:
        return (
            f"image generation needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed; install the extra: pip install 'agentd-daemon[{EXTRA}]' (from a checkout: pip install -e '.[{EXTRA}]')"
        )
    if config is None:
        return None
    from .settings import NO_MODEL, parse_settings

    try:
        settings = parse_settings(config.plugin_settings("image"))
    except ToolError as exc:
        return str(exc)
    return None if settings.model.strip() else NO_MODEL


def make_generate_image(home: Path | None = None) -> Callable[..., ToolResult]:
    """The tool function; relative model paths in the settings are resolved against ``home`` (AGENTD_HOME)."""

    def generate_image(
        ctx: ToolContext,
        prompt: str,
        negative_prompt: str = "",
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | None = None,
        path: str = "",
    ) -> ToolResult:
        """Generate an image from a text prompt with the local diffusion model and save it as a PNG in the workspace. Width and height must be multiples of 8; leave width, height, steps and guidance out for the configured defaults and seed out for a random one (the seed used is reported, so the same image can be made again). path optionally names the PNG file.

        The PNG's text chunks and the journal record the prompt, seed, model and settings.
        """
        from .tool import run_generate_image

        return run_generate_image(
            ctx,
            home,
            path=path,
            prompt=prompt,
            negative_prompt=negative_prompt,
            width=width,
            height=height,
            steps=steps,
            guidance=guidance,
            seed=seed,
        )

    return generate_image


@hookimpl
def register_settings(register):
    """``[plugins.image]`` is validated when the config loads (the settings module imports only pydantic)."""
    from .settings import ImageSettings

    register(ImageSettings)


@hookimpl
def register_tools(register, config):
    reason = unavailable_reason(config)
    if reason:
        log.info("generate_image not registered: %s", reason)
        return
    from .settings import parse_settings

    timeout_s = parse_settings(config.plugin_settings("image")).timeout_s if config is not None else None
    home = Path(config.home) if config is not None else None
    register(make_generate_image(home), side_effects=["writes_files", "uses_gpu"], timeout_s=timeout_s,
             goal_phrases=("generate an image", "generate a picture", "create an image", "make an image",
                           "draw a picture", "draw an image"))


@hookimpl
def unavailable_tools(config):
    """``agentd tools list``: why generate_image is missing, if it is."""
    reason = unavailable_reason(config)
    return [f"generate_image: {reason}"] if reason else []


@hookimpl
def doctor_checks(config: Any) -> list[tuple[str, bool, str]]:
    """(name, ok, detail or what to do) for ``agentd doctor``.

    Image generation is optional: not installed or no model configured is reported but is not a failure;
    invalid settings, a configured model that cannot be found, or an unusable device are.
    """
    from .settings import NO_MODEL, parse_settings

    try:
        settings = parse_settings(config.plugin_settings("image"))
    except ToolError as exc:
        return [("settings", False, str(exc))]
    wanted = bool(settings.model.strip())
    missing = unavailable_reason()
    if missing:
        return [("dependencies", not wanted, missing if wanted else f"optional, not installed: {missing}")]
    checks = [("dependencies", True, ", ".join(f"{dist} {_version(dist)}" for _, dist in REQUIRED))]
    if not wanted:
        return [*checks, ("model", True, f"generate_image is off: {NO_MODEL}")]
    from .loader import resolve_model
    from .runtime import choose_device, choose_dtype

    try:
        checks.append(("model", True, resolve_model(settings, Path(config.home)).describe()))
    except ToolError as exc:
        checks.append(("model", False, str(exc)))
    try:
        device = choose_device(settings.device)
        checks.append(("device", True, f"{device}, {choose_dtype(device, settings.dtype)}"))
    except ToolError as exc:
        checks.append(("device", False, str(exc)))
    return checks


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"
