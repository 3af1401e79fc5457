"""The image plugin without a real model: settings, request checks, model lookup, PNG text, registration,
doctor checks, and the tool's error paths over a fake pipeline."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from types import SimpleNamespace

import agentd_image
import pytest
from agentd_image import loader, service
from agentd_image.request import build_request, output_path
from agentd_image.settings import ImageSettings, parse_settings

from agentd import ToolContext, ToolError
from agentd.config import load_config
from agentd.tools import Tool, execute


@pytest.fixture(autouse=True)
def _no_shared_pipeline():
    yield
    service.release_all()


@pytest.fixture
def ctx(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return ToolContext(run_id="r1", workspace=workspace, settings={})


@pytest.fixture
def model_dir(tmp_path):
    """A folder that looks like a diffusers pipeline to the lookup (the fake loader never reads it)."""
    folder = tmp_path / "fake-model"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    return folder


# -- settings ---------------------------------------------------------------------------------------
def test_settings_defaults():
    s = parse_settings({})
    assert (s.device, s.dtype, s.keep_warm_s, s.max_steps, s.width, s.height) == (
        "auto",
        "auto",
        300.0,
        50,
        512,
        512,
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"modle": "x"}, "plugins.image.modle: unknown key"),
        ({"device": "gpu"}, "plugins.image.device: must be auto, cpu, cuda, cuda:N or mps"),
        ({"width": 500}, "plugins.image.width: must be a multiple of 8"),
        ({"keep_warm_s": -1}, "plugins.image.keep_warm_s"),
        ({"steps": 80}, "plugins.image.steps = 80 is above plugins.image.max_steps = 50"),
        ({"dtype": "float8"}, "plugins.image.dtype"),
    ],
)
def test_bad_settings_name_the_key(table, message):
    with pytest.raises(ToolError, match="invalid image settings") as err:
        parse_settings(table)
    assert message in str(err.value)


def test_device_accepts_numbered_cuda():
    assert parse_settings({"device": "CUDA:1"}).device == "cuda:1"


# -- requests ---------------------------------------------------------------------------------------
def test_request_fills_defaults_and_picks_a_random_seed():
    settings = ImageSettings(width=256, height=128, steps=10, guidance=5.0)
    req = build_request(settings, "  a cat  ")
    assert (req.prompt, req.width, req.height, req.steps, req.guidance) == ("a cat", 256, 128, 10, 5.0)
    assert req.seed_was_random and 0 <= req.seed < 2**32
    fixed = build_request(settings, "a cat", seed=42, width=64)
    assert fixed.seed == 42 and not fixed.seed_was_random and fixed.width == 64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"width": 65}, "width must be a multiple of 8 (got 65); try 64 or 72"),
        ({"height": 100}, "height must be a multiple of 8"),
        ({"width": 32}, "width must be at least 64"),
        ({"width": 2048, "height": 2048}, "above the limit of 1048576 (plugins.image.max_pixels)"),
        ({"steps": 51}, "steps must be between 1 and 50 (plugins.image.max_steps), got 51"),
        ({"steps": 0}, "steps must be between 1 and 50"),
        ({"guidance": -1.0}, "guidance must be between 0 and 50"),
        ({"seed": 2**64}, "seed must be at most"),
        ({"prompt": "  "}, "prompt is empty"),
    ],
)
def test_unsupported_requests_are_refused_with_advice(args, message):
    args = {"prompt": "a cat"} | args
    with pytest.raises(ToolError) as err:
        build_request(ImageSettings(), **args)
    assert message in str(err.value)


def test_output_path_explicit_default_and_unique(ctx):
    settings, req = ImageSettings(), build_request(ImageSettings(), "a cat", seed=7)
    assert output_path(ctx, settings, req, "pics/cat") == (ctx.workspace / "pics" / "cat.png").resolve()
    with pytest.raises(ToolError, match="leaves the workspace"):
        output_path(ctx, settings, req, "../cat.png")
    first = output_path(ctx, settings, req)
    assert first.parent.name == "images" and first.name.endswith("-seed7.png")
    first.parent.mkdir()
    first.write_bytes(b"x")
    assert output_path(ctx, settings, req) != first


# -- finding the model ------------------------------------------------------------------------------
def test_no_model_configured():
    with pytest.raises(ToolError, match="no image model is configured"):
        loader.resolve_model(ImageSettings())


def test_missing_folder(tmp_path):
    with pytest.raises(ToolError, match="does not exist"):
        loader.resolve_model(ImageSettings(model=str(tmp_path / "nope")))


def test_folder_without_model_index(tmp_path):
    with pytest.raises(ToolError, match="no model_index.json"):
        loader.resolve_model(ImageSettings(model=str(tmp_path)))


def test_single_checkpoint_file_is_explained(tmp_path):
    ckpt = tmp_path / "sd15.safetensors"
    ckpt.write_bytes(b"x")
    with pytest.raises(ToolError, match="single checkpoint file"):
        loader.resolve_model(ImageSettings(model=str(ckpt)))


def test_folder_absolute_and_relative_to_home(model_dir):
    assert loader.resolve_model(ImageSettings(model=str(model_dir))).location == str(model_dir.resolve())
    relative = loader.resolve_model(ImageSettings(model="fake-model"), home=model_dir.parent)
    assert (relative.kind, relative.location) == ("dir", str(model_dir.resolve()))


def test_repo_id_only_from_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cache = tmp_path / "hf"
    with pytest.raises(ToolError, match="never downloads models"):
        loader.resolve_model(ImageSettings(model="someorg/some-model", cache_dir=str(cache)))
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    # The cache layout huggingface_hub writes: refs/main names the snapshot holding the files.
    repo = cache / "models--someorg--some-model"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "model_index.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    source = loader.resolve_model(ImageSettings(model="someorg/some-model", cache_dir=str(cache)))
    assert (source.kind, source.location) == ("hub", "someorg/some-model")


# -- PNG text chunks --------------------------------------------------------------------------------
def test_png_text_round_trip_including_non_latin1(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    from agentd_image.png import read_png_text, save_png

    target = tmp_path / "out" / "x.png"
    save_png(pil.new("RGB", (16, 8), "red"), target, {"prompt": "ein Kätzchen, 猫", "seed": 3})
    assert read_png_text(target) == {"prompt": "ein Kätzchen, 猫", "seed": "3"}
    assert not list(target.parent.glob("*.part"))
    with pil.open(target) as img:
        assert (img.format, img.size) == ("PNG", (16, 8))


# -- availability and registration ------------------------------------------------------------------
def _config(home: Path, table: dict):
    # Unvalidated: the plugin's own checks must hold even for a table the config loader would refuse.
    return load_config(home=home, env={}, overrides={"plugins.image": table}, validate_plugins=False)


def _registered(config) -> list[Tool]:
    tools: list[Tool] = []
    agentd_image.register_tools(
        register=lambda fn, **kw: tools.append(Tool.from_function(fn, **kw)), config=config
    )
    return tools


def test_missing_dependencies_unregister_the_tool_and_say_why(monkeypatch, tmp_path, model_dir):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name)
    )
    reason = agentd_image.unavailable_reason()
    assert "diffusers" in reason and "pip install 'agentd-daemon[image]'" in reason
    configured = _config(tmp_path, {"model": str(model_dir)})
    assert _registered(configured) == [] and _registered(None) == []
    assert agentd_image.unavailable_tools(config=configured) == [f"generate_image: {reason}"]
    # Optional until asked for: a failure only when a model is configured.
    assert agentd_image.doctor_checks(configured) == [("dependencies", False, reason)]
    [(name, ok, detail)] = agentd_image.doctor_checks(_config(tmp_path, {}))
    assert (name, ok) == ("dependencies", True) and detail.startswith("optional, not installed")


needs_extra = pytest.mark.skipif(
    agentd_image.unavailable_reason() is not None, reason="image extra not installed"
)


@needs_extra
def test_registers_generate_image_with_schema_and_timeout(tmp_path, model_dir):
    config = _config(tmp_path, {"model": str(model_dir), "timeout_s": 90})
    [tool] = _registered(config)
    assert agentd_image.unavailable_tools(config=config) == []
    assert tool.name == "generate_image" and tool.timeout_s == 90
    assert set(tool.side_effects) == {"writes_files", "uses_gpu"}
    props = tool.parameters["properties"]
    assert set(props) == {"prompt", "negative_prompt", "width", "height", "steps", "guidance", "seed", "path"}
    assert tool.parameters["required"] == ["prompt"] and tool.wants_ctx
    assert "multiples of 8" in tool.description


@needs_extra
@pytest.mark.parametrize(
    ("table", "reason"),
    [({}, "no image model is configured"), ({"model": "x", "max_steps": 0}, "plugins.image.max_steps")],
)
def test_not_registered_without_a_model_or_with_bad_settings(tmp_path, table, reason):
    config = _config(tmp_path, table)
    assert _registered(config) == []
    [line] = agentd_image.unavailable_tools(config=config)
    assert line.startswith("generate_image: ") and reason in line


@needs_extra
def test_a_configured_but_missing_model_stays_registered(tmp_path):
    # It may appear later (a mounted disk); the call then says what is wrong.
    assert len(_registered(_config(tmp_path, {"model": str(tmp_path / "later")}))) == 1


@needs_extra
def test_doctor_checks(tmp_path, model_dir):
    def checks(table):
        return {
            name: (ok, detail) for name, ok, detail in agentd_image.doctor_checks(_config(tmp_path, table))
        }

    off = checks({})
    assert off["dependencies"][0] and "diffusers" in off["dependencies"][1]
    assert off["model"][0] is True and "generate_image is off" in off["model"][1] and "device" not in off
    on = checks({"model": str(model_dir), "device": "cpu"})
    assert on["model"] == (True, f"folder {model_dir.resolve()}") and on["device"] == (True, "cpu, float32")
    missing = checks({"model": str(tmp_path / "gone")})
    assert missing["model"][0] is False and "does not exist" in missing["model"][1]
    bad = checks({"max_steps": 0})
    assert (
        list(bad) == ["settings"]
        and bad["settings"][0] is False
        and "plugins.image.max_steps" in bad["settings"][1]
    )


# -- the tool over a fake pipeline ------------------------------------------------------------------
class FakePipe:
    """Answers like a diffusers text-to-image pipeline, or fails the way a real one can."""

    def __init__(self, fail: BaseException | None = None, on_step=None) -> None:
        self.fail = fail
        self.on_step = on_step
        self.calls: list[dict] = []

    def __call__(
        self, prompt, width, height, num_inference_steps, generator, output_type, callback_on_step_end
    ):
        from PIL import Image

        self.calls.append({"prompt": prompt, "width": width, "height": height})
        if self.fail is not None:
            raise self.fail
        for step in range(num_inference_steps):
            if self.on_step:
                self.on_step()
            callback_on_step_end(self, step, step, {})
        return SimpleNamespace(images=[Image.new("RGB", (width, height), "blue")])


@pytest.fixture
def fake_pipeline(monkeypatch):
    pytest.importorskip("torch")
    from agentd_image import tool

    holder = {"pipe": FakePipe(), "loads": 0}

    def fake_load(settings, home):
        holder["loads"] += 1
        return loader.LoadedPipeline(
            pipe=holder["pipe"],
            model=settings.model,
            device="cpu",
            dtype="float32",
            pipeline="FakePipe",
            scheduler="FakeScheduler",
            load_seconds=0.0,
        )

    monkeypatch.setattr(tool, "load_pipeline", fake_load)
    return holder


def _tool(tmp_path) -> Tool:
    return Tool.from_function(agentd_image.make_generate_image(tmp_path), side_effects=["writes_files"])


def test_tool_notes_ignored_arguments_and_saves_metadata(ctx, model_dir, fake_pipeline, tmp_path):
    ctx.settings = {"model": str(model_dir)}
    result = execute(
        _tool(tmp_path),
        {"prompt": "a cat", "negative_prompt": "dogs", "guidance": 3, "seed": 9, "width": 64, "height": 72},
        ctx,
    )
    assert result.ok, result.error
    assert result.data["notes"] == [
        "FakePipe takes no guidance; it was ignored",
        "FakePipe takes no negative prompt; it was ignored",
    ]
    assert result.data["image_size"] == [64, 72] and result.data["seed"] == 9
    from agentd_image.png import read_png_text

    text = read_png_text(ctx.workspace / result.artifacts[0])
    assert (text["prompt"], text["negative_prompt"], text["seed"], text["model"]) == (
        "a cat",
        "dogs",
        "9",
        str(model_dir),
    )


def test_out_of_memory_is_a_tool_error_and_releases_the_pipeline(ctx, model_dir, fake_pipeline, tmp_path):
    import torch

    fake_pipeline["pipe"] = FakePipe(
        fail=torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
    )
    ctx.settings = {"model": str(model_dir)}
    result = execute(_tool(tmp_path), {"prompt": "a cat", "width": 1024, "height": 1024}, ctx)
    assert not result.ok
    assert "out of memory generating a 1024x1024 image" in result.error and "512x512" in result.error
    assert "keep_warm_s = 0" in result.error
    assert result.data["out_of_memory"] is True
    assert service._active.loaded is None
    fake_pipeline["pipe"] = FakePipe()
    assert execute(_tool(tmp_path), {"prompt": "a cat", "width": 64, "height": 64}, ctx).ok
    assert fake_pipeline["loads"] == 2


def test_a_pipeline_failure_is_a_tool_error_with_advice(ctx, model_dir, fake_pipeline, tmp_path):
    fake_pipeline["pipe"] = FakePipe(fail=ValueError("operands could not be broadcast together"))
    ctx.settings = {"model": str(model_dir)}
    result = execute(_tool(tmp_path), {"prompt": "a cat", "width": 64, "height": 64, "steps": 2}, ctx)
    assert result.error == (
        "FakePipe failed at 64x64, 2 steps (FakeScheduler): ValueError: operands could not be broadcast "
        "together; try more steps or another size"
    )


def test_cancel_stops_between_steps(ctx, model_dir, fake_pipeline, tmp_path):
    ctx.settings = {"model": str(model_dir)}
    fake_pipeline["pipe"] = FakePipe(on_step=ctx.cancel.set)
    result = execute(_tool(tmp_path), {"prompt": "a cat", "width": 64, "height": 64, "steps": 5}, ctx)
    assert "cancelled" in result.error
    assert not list(ctx.workspace.rglob("*.png"))


def test_errors_before_any_model_is_loaded(ctx, fake_pipeline, tmp_path):
    tool = _tool(tmp_path)
    ctx.settings = {}
    assert "no image model is configured" in execute(tool, {"prompt": "a cat"}, ctx).error
    ctx.settings = {"model": str(tmp_path / "missing")}
    assert "does not exist" in execute(tool, {"prompt": "a cat"}, ctx).error
    ctx.settings = {"model": str(tmp_path), "max_steps": 10, "steps": 5}
    assert "plugins.image.max_steps" in execute(tool, {"prompt": "a cat", "steps": 11}, ctx).error
    assert "multiple of 8" in execute(tool, {"prompt": "a cat", "width": 100}, ctx).error
    assert "invalid arguments" in execute(tool, {"width": 64}, ctx).error
    assert fake_pipeline["loads"] == 0


def test_wait_for_the_pipeline_honours_the_executor_timeout(ctx, model_dir, fake_pipeline, tmp_path):
    ctx.settings = {"model": str(model_dir), "timeout_s": 0.3}
    entered, release = threading.Event(), threading.Event()
    fake_pipeline["pipe"] = FakePipe(on_step=lambda: (entered.set(), release.wait(10)))
    busy = ToolContext(run_id="r0", workspace=ctx.workspace, settings=ctx.settings)
    holder = threading.Thread(
        target=execute, args=(_tool(tmp_path), {"prompt": "x", "width": 64, "height": 64, "steps": 1}, busy)
    )
    holder.start()
    assert entered.wait(10), "the first call never started generating"
    tool = Tool.from_function(agentd_image.make_generate_image(tmp_path), timeout_s=0.3)
    result = execute(tool, {"prompt": "y", "width": 64, "height": 64, "steps": 1}, ctx)
    # The call's own flag stops the queued call; the run itself is not cancelled by one slow tool.
    assert "timed out" in result.error and not ctx.cancel.is_set()
    release.set()
    holder.join(10)


def test_registering_imports_nothing_heavy(tmp_path):
    """`agentd --help` and a daemon without image calls must not pay for torch or diffusers."""
    import subprocess
    import sys

    code = (
        "import sys; from agentd.config import load_config; import agentd_image; "
        f"config = load_config(home=__import__('pathlib').Path({str(tmp_path)!r}), env={{}}); "
        "agentd_image.register_tools(register=lambda *a, **k: None, config=config); "
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'PIL', 'huggingface_hub') "
        "if m in sys.modules); print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
