"""The ``[plugins.image]`` settings, validated with pydantic; every mistake names its key.

pydantic is imported here, at this module's top, because agentd itself already imports it; this module is
imported lazily by the plugin so that nothing image-related loads at start-up.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentd import ToolError

NO_MODEL = (
    "no image model is configured: set [plugins.image] model to a diffusers pipeline folder "
    "(one with model_index.json) or a Hugging Face repo id already in the local cache"
)
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class ImageSettings(BaseModel):
    """Everything ``[plugins.image]`` may hold, with the documented defaults."""

    model_config = ConfigDict(extra="forbid")

    # A diffusers pipeline folder (holds model_index.json; relative paths are relative to AGENTD_HOME) or a
    # Hugging Face repo id that is already in the local cache. Never downloaded: loading is strictly offline.
    model: str = ""
    cache_dir: str = ""  # Hugging Face cache to look in; empty: the default (HF_HUB_CACHE / HF_HOME)
    variant: str = ""  # weight-file variant, e.g. "fp16" for repos that ship *.fp16.safetensors
    scheduler: str = (
        ""  # swap the pipeline's scheduler for a diffusers class, e.g. "DPMSolverMultistepScheduler"
    )
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = (
        "auto"  # auto: float16 on cuda, float32 elsewhere
    )
    # Seconds the pipeline stays loaded after a call; 0 loads and unloads around every call (a GPU shared
    # with the chat model gets its memory back between images).
    keep_warm_s: float = Field(300.0, ge=0)
    # Cap on the fraction of the GPU's memory torch may take (0: no cap); past it a call fails with a clear
    # out-of-memory error instead of squeezing a chat model that shares the GPU.
    gpu_memory_fraction: float = Field(0.0, ge=0, le=1)
    # Threads torch uses on the CPU (0: torch's default, one per core). torch's setting is process-wide;
    # lower it when the CPU is shared with a chat model or other work (oversubscribed threads crawl).
    cpu_threads: int = Field(0, ge=0)
    timeout_s: float = Field(600.0, gt=0)  # per call, including loading the model
    width: int = Field(512, ge=64)  # defaults when the model leaves width/height/steps/guidance out
    height: int = Field(512, ge=64)
    steps: int = Field(25, ge=1)
    guidance: float = Field(7.5, ge=0)
    max_steps: int = Field(50, ge=1)  # calls asking for more steps are refused
    max_pixels: int = Field(1024 * 1024, ge=64 * 64)  # width * height above this is refused
    output_dir: str = "images"  # folder in the run's workspace for images saved without an explicit path

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        value = value.strip().lower()
        if not DEVICE_PATTERN.match(value):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return value

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (got {value})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ImageSettings:
        if self.steps > self.max_steps:
            raise ValueError(
                f"plugins.image.steps = {self.steps} is above plugins.image.max_steps = {self.max_steps}; "
                "lower steps or raise max_steps"
            )
        if self.width * self.height > self.max_pixels:
            raise ValueError(
                f"width * height = {self.width * self.height} is above max_pixels = {self.max_pixels}"
            )
        return self


def parse_settings(table: dict[str, Any] | None) -> ImageSettings:
    """Validate a ``[plugins.image]`` table; raise ToolError naming the bad key and what to put there."""
    try:
        return ImageSettings.model_validate(table or {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            where = f"plugins.image.{key}" if key else "plugins.image"
            if err["type"] == "extra_forbidden":
                problems.append(f"{where}: unknown key (see docs/image.md for the keys)")
            elif not key:
                problems.append(err["msg"].removeprefix("Value error, "))
            else:
                problems.append(
                    f"{where}: {err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})"
                )
        raise ToolError("invalid image settings: " + "; ".join(problems)) from None
