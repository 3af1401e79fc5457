"""generate_image end to end with a real (tiny, randomly initialised) Stable Diffusion pipeline.

The pipeline is built from diffusers' and transformers' config classes and saved to disk once per session
(tests/integration/tiny_sd.py); the plugin loads it from there exactly as it would load a real model. Every
generation test runs on the CPU and, where present, on CUDA and MPS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="the image extra is not installed (pip install -e '.[image]')")
pytest.importorskip("transformers", reason="the image extra is not installed (pip install -e '.[image]')")

import agentd_image  # noqa: E402
import numpy as np  # noqa: E402  (after the skips: numpy comes with the image extra's torch)
from agentd_image import service  # noqa: E402
from agentd_image.png import read_png_text  # noqa: E402
from PIL import Image  # noqa: E402

from agentd import Goal, ToolContext  # noqa: E402
from agentd.testing import call, feedback, make_test_app, plan  # noqa: E402
from agentd.tools import Tool, execute  # noqa: E402

try:
    from tiny_sd import cached_tiny_sd
except ImportError:  # tests/ laid out as packages
    from .tiny_sd import cached_tiny_sd

pytestmark = pytest.mark.integration

SIZE = {"width": 64, "height": 64, "steps": 2}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return cached_tiny_sd(tmp_path_factory)


@pytest.fixture(params=["cpu", "cuda", "mps"])
def device(request):
    """Each generation test once per device; devices this machine lacks are skipped."""
    import torch

    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    if request.param == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        pytest.skip("MPS is not available")
    return request.param


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    """cpu_threads = 1 below sets torch's process-wide thread count; give other tests theirs back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fresh_pipeline():
    service.release_all()
    yield
    service.release_all()


@pytest.fixture
def run_tool(tmp_path, tiny_model, device):
    """run_tool(args, **settings) -> (ToolResult, workspace): one call through the real tool executor."""
    tool = Tool.from_function(agentd_image.make_generate_image(tmp_path), side_effects=["writes_files"])

    def run(args, **settings):
        # mkdtemp, not a count of existing folders: concurrent calls (the queueing test) must not collide.
        workspace = Path(tempfile.mkdtemp(prefix="ws", dir=tmp_path))
        # One CPU thread: the tiny model gains nothing from more, and a busy CI machine makes them crawl.
        table = {"model": str(tiny_model), "device": device, "cpu_threads": 1} | settings
        ctx = ToolContext(run_id="r", workspace=workspace, settings=table, timeout_s=120)
        return execute(tool, args, ctx), workspace

    return run


def pixels(path):
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def assert_png(path, size, **text):
    """A valid PNG of ``size`` whose text chunks hold ``text``."""
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert (img.format, img.size, img.mode) == ("PNG", size, "RGB")
    chunks = read_png_text(path)
    for key, value in text.items():
        assert chunks[key] == str(value), key
    return chunks


def test_generates_a_png_with_its_recipe(run_tool, tiny_model, device):
    result, ws = run_tool({"prompt": "a photo of a red cat", "negative_prompt": "blue", "seed": 11} | SIZE)
    assert result.ok, result.error
    (artifact,) = result.artifacts
    chunks = assert_png(
        ws / artifact,
        (64, 64),
        prompt="a photo of a red cat",
        negative_prompt="blue",
        seed=11,
        model=str(tiny_model),
        steps=2,
        width=64,
        height=64,
        device=device,
    )
    assert "Seed: 11, Size: 64x64" in chunks["parameters"]
    data = result.data
    assert (data["seed"], data["model"], data["prompt"], data["path"]) == (
        11,
        str(tiny_model),
        "a photo of a red cat",
        artifact,
    )
    assert (data["pipeline"], data["scheduler"], data["device"]) == (
        "StableDiffusionPipeline",
        "DDIMScheduler",
        device,
    )
    assert data["dtype"] == ("float16" if device == "cuda" else "float32")
    assert data["cold_start"] is True and data["image_size"] == [64, 64]
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # loading put the Hugging Face libraries offline
    if device == "cuda":
        assert data["gpu_memory"]["total_mib"] > 0 and data["gpu_memory"]["peak_allocated_mib"] >= 0
    assert pixels(ws / artifact).std() > 0  # not a blank image


def test_same_seed_same_image_different_seed_different_image(run_tool):
    first, ws1 = run_tool({"prompt": "a dog on the sky", "seed": 1234} | SIZE)
    again, ws2 = run_tool({"prompt": "a dog on the sky", "seed": 1234} | SIZE)
    other, ws3 = run_tool({"prompt": "a dog on the sky", "seed": 4321} | SIZE)
    assert first.ok and again.ok and other.ok
    a, b, c = (pixels(ws / r.artifacts[0]) for ws, r in ((ws1, first), (ws2, again), (ws3, other)))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert again.data["cold_start"] is False  # the second call found the pipeline warm


def test_random_seed_is_reported_and_reproduces(run_tool):
    first, ws1 = run_tool({"prompt": "a blue dog"} | SIZE)
    assert first.ok and first.data["seed_was_random"]
    again, ws2 = run_tool({"prompt": "a blue dog", "seed": first.data["seed"]} | SIZE)
    assert np.array_equal(pixels(ws1 / first.artifacts[0]), pixels(ws2 / again.artifacts[0]))


def test_dtype_and_scheduler_overrides(run_tool, device):
    if device != "cpu":
        pytest.skip("one device is enough to check the overrides reach the pipeline")
    result, ws = run_tool(
        {"prompt": "a cat", "seed": 2} | SIZE, dtype="bfloat16", scheduler="DPMSolverMultistepScheduler"
    )
    assert result.ok, result.error
    assert (result.data["dtype"], result.data["scheduler"]) == ("bfloat16", "DPMSolverMultistepScheduler")
    assert_png(ws / result.artifacts[0], (64, 64), dtype="bfloat16", scheduler="DPMSolverMultistepScheduler")
    bad, _ = run_tool({"prompt": "a cat"} | SIZE, scheduler="NoSuchScheduler")
    assert "is not a diffusers scheduler class" in bad.error


def test_keep_warm_zero_loads_and_unloads_around_each_call(run_tool):
    for _ in range(2):
        result, _ = run_tool({"prompt": "a cat", "seed": 1} | SIZE, keep_warm_s=0)
        assert result.ok and result.data["cold_start"] and result.data["released_after"]
        assert service._active.loaded is None


def test_concurrent_calls_queue_for_one_pipeline(run_tool):
    results = []
    threads = [
        threading.Thread(target=lambda s=s: results.append(run_tool({"prompt": "a cat", "seed": s} | SIZE)))
        for s in (1, 2, 3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 3 and all(r.ok for r, _ in results)
    assert service._active.loads == 1
    assert sorted(r.data["cold_start"] for r, _ in results) == [False, False, True]


def test_bad_requests_are_tool_errors(run_tool, tmp_path):
    assert "multiple of 8" in run_tool({"prompt": "a cat", "width": 65})[0].error
    assert "max_steps" in run_tool({"prompt": "a cat", "steps": 9}, max_steps=8, steps=4)[0].error
    missing = run_tool({"prompt": "a cat"} | SIZE, model=str(tmp_path / "no-such-model"))[0]
    assert "does not exist" in missing.error


def test_a_broken_model_folder_is_a_tool_error(run_tool, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]})
    )
    result, _ = run_tool({"prompt": "a cat"} | SIZE, model=str(broken))
    assert "could not load image model" in result.error


def _goal_app(home, device, tiny_model, replies):
    return make_test_app(
        home,
        replies,
        settings={"plugins.image": {"model": str(tiny_model), "device": device, "cpu_threads": 1}},
        env={"AGENTD_LOAD_PLUGINS": "workspace,image"},
    )


def test_goal_draws_an_image_after_a_refused_size(home, tiny_model, device):
    replies = [
        plan(("draw a red cat as a 64x64 image", "generate_image")),
        call("generate_image", prompt="a red cat", width=65, height=64, steps=2, seed=5),
        feedback("continue", summary="the size was refused; retry with 64"),
        call("generate_image", prompt="a red cat", width=64, height=64, steps=2, seed=5, path="cat.png"),
        feedback("done", final_answer="drew cat.png"),
    ]
    app, _ = _goal_app(home, device, tiny_model, replies)
    try:
        assert "generate_image" in app.tools
        run_id = app.engine.submit(Goal(text="draw a red cat"))
        outcome = app.engine.run(run_id)
        assert outcome["status"] == "succeeded", outcome
        calls = app.journal.tool_calls(run_id)
        assert [c["tool"] for c in calls] == ["generate_image", "generate_image"]
        assert "multiple of 8" in calls[0]["result"]["error"]
        recorded = calls[1]["result"]
        assert recorded["error"] is None and recorded["artifacts"] == ["cat.png"]
        assert (recorded["data"]["prompt"], recorded["data"]["seed"], recorded["data"]["model"]) == (
            "a red cat",
            5,
            str(tiny_model),
        )
        assert_png(
            app.config.workspaces / run_id / "cat.png",
            (64, 64),
            prompt="a red cat",
            seed=5,
            model=str(tiny_model),
        )
    finally:
        app.close()


def test_cli_tools_run_generates_a_png(home, tiny_model):
    (home / "configs").mkdir(exist_ok=True)
    (home / "configs" / "agentd.toml").write_text(
        f'[plugins.image]\nmodel = "{tiny_model}"\ndevice = "cpu"\ncpu_threads = 1\nkeep_warm_s = 0\n',
        encoding="utf-8",
    )
    env = os.environ | {"AGENTD_HOME": str(home), "AGENTD_LOAD_PLUGINS": "workspace,image"}
    args = ["prompt=a photo of a cat", "width=64", "height=64", "steps=2", "seed=3"]
    command = [sys.executable, "-c", "from agentd.cli import main; main()", "tools", "run", "generate_image"]
    for arg in args:
        command += ["--arg", arg]
    done = subprocess.run(command + ["--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (png,) = list(home.rglob("*.png"))
    assert png.name in done.stdout
    assert_png(png, (64, 64), prompt="a photo of a cat", seed=3, model=str(tiny_model))
