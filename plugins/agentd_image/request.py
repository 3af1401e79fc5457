"""One image request: the tool's arguments checked against the settings before any model is touched."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentd import ToolContext, ToolError

from .settings import ImageSettings

MAX_SEED = 2**63 - 1
MIN_SIDE = 64


@dataclass
class ImageRequest:
    """A validated request; every field is concrete (defaults filled in, seed chosen)."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    seed_was_random: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_request(
    settings: ImageSettings,
    prompt: str,
    negative_prompt: str = "",
    width: int | None = None,
    height: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
) -> ImageRequest:
    """Fill defaults from the settings and refuse what the model cannot generate, saying what would work."""
    if not prompt or not prompt.strip():
        raise ToolError("prompt is empty; describe the image to generate")
    width = settings.width if width is None else width
    height = settings.height if height is None else height
    steps = settings.steps if steps is None else steps
    guidance = settings.guidance if guidance is None else guidance
    for name, side in (("width", width), ("height", height)):
        if side % 8:
            lower = max(MIN_SIDE, side - side % 8)
            raise ToolError(f"{name} must be a multiple of 8 (got {side}); try {lower} or {lower + 8}")
        if side < MIN_SIDE:
            raise ToolError(f"{name} must be at least {MIN_SIDE} pixels (got {side})")
    if width * height > settings.max_pixels:
        raise ToolError(
            f"{width}x{height} is {width * height} pixels, above the limit of {settings.max_pixels} "
            f"(plugins.image.max_pixels); ask for a smaller image, e.g. {settings.width}x{settings.height}"
        )
    if not 1 <= steps <= settings.max_steps:
        raise ToolError(
            f"steps must be between 1 and {settings.max_steps} (plugins.image.max_steps), got {steps}; "
            f"{settings.steps} is the usual choice"
        )
    if not 0 <= guidance <= 50:
        raise ToolError(
            f"guidance must be between 0 and 50 (got {guidance:g}); {settings.guidance:g} is typical"
        )
    random_seed = seed is None or seed < 0
    if seed is not None and seed > MAX_SEED:
        raise ToolError(f"seed must be at most {MAX_SEED} (got {seed}); leave it out for a random one")
    chosen = secrets.randbelow(2**32) if random_seed else int(seed)  # type: ignore[arg-type]
    return ImageRequest(
        prompt=prompt.strip(),
        negative_prompt=(negative_prompt or "").strip(),
        width=int(width),
        height=int(height),
        steps=int(steps),
        guidance=float(guidance),
        seed=chosen,
        seed_was_random=random_seed,
    )


def output_path(ctx: ToolContext, settings: ImageSettings, request: ImageRequest, path: str = "") -> Path:
    """Where the PNG goes: ``path`` if given (".png" added when missing), else a fresh name in output_dir."""
    if path.strip():
        name = path.strip()
        if not name.lower().endswith(".png"):
            name += ".png"
        return ctx.resolve(name)
    folder = ctx.resolve(settings.output_dir)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-seed{request.seed}"
    target = folder / f"{stem}.png"
    counter = 2
    while target.exists():
        target = folder / f"{stem}-{counter}.png"
        counter += 1
    return target
