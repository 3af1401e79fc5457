"""Writing PNGs whose text chunks say how they were made, and reading those chunks back."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def parameters_line(meta: dict[str, Any]) -> str:
    """The widely read ``parameters`` text (AUTOMATIC1111 style), so other image tools show the settings too."""
    lines = [str(meta.get("prompt", ""))]
    if meta.get("negative_prompt"):
        lines.append(f"Negative prompt: {meta['negative_prompt']}")
    lines.append(
        f"Steps: {meta.get('steps')}, Sampler: {meta.get('scheduler')}, CFG scale: {meta.get('guidance')}, "
        f"Seed: {meta.get('seed')}, Size: {meta.get('width')}x{meta.get('height')}, Model: {meta.get('model')}"
    )
    return "\n".join(lines)


def save_png(image: Any, target: Path, text: dict[str, Any]) -> None:
    """Save ``image`` (PIL) as PNG with one text chunk per item (iTXt where the text is not Latin-1).

    Written to a temporary name first, so a reader never sees half a file.
    """
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, "" if value is None else str(value))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        image.save(partial, format="PNG", pnginfo=info)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def read_png_text(path: Path) -> dict[str, str]:
    """The text chunks of a PNG file."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()  # text chunks after the image data are only read once the pixels are
        return dict(getattr(img, "text", {}) or {})
