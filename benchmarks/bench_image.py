"""Benchmark the image plugin: model load time and seconds per image on every available device.

Standalone; needs the image extra (pip install -e '.[image]'). Without --model it builds the tiny random
Stable Diffusion pipeline the tests use, so it runs anywhere without a download:

    python benchmarks/bench_image.py                       # tiny pipeline, 64x64, 4 steps, cpu/cuda/mps
    python benchmarks/bench_image.py --steps 20 --repeat 5
    python benchmarks/bench_image.py --model /models/sd-1.5 --size 512 --steps 25 --devices cuda

It goes through the plugin's own loader and generation code (offline loading, device/dtype choice, the
CPU-seeded generator), so the numbers are what generate_image pays, minus writing the PNG.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_tiny(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from tiny_sd import build_tiny_sd

    return build_tiny_sd(folder / "tiny-sd")


def bench_device(model: str, device: str, args: argparse.Namespace) -> dict:
    import torch
    from agentd_image import runtime
    from agentd_image.generate import generate
    from agentd_image.loader import load_pipeline
    from agentd_image.request import build_request
    from agentd_image.settings import ImageSettings

    settings = ImageSettings(
        model=model,
        device=device,
        dtype=args.dtype,
        cpu_threads=args.cpu_threads,
        max_steps=max(50, args.steps),
        max_pixels=max(1024 * 1024, args.size * args.size),
    )
    loaded = load_pipeline(settings)
    request = build_request(
        settings, args.prompt, width=args.size, height=args.size, steps=args.steps, seed=0
    )
    cancel = threading.Event()

    def one() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        generate(loaded, request, cancel)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - started

    runtime.reset_peak(device)
    first = one()
    times = [one() for _ in range(args.repeat)]
    memory = runtime.memory_report(device)
    row = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else device,
        "dtype": loaded.dtype,
        "load_s": loaded.load_seconds,
        "first_s": first,
        "mean_s": statistics.mean(times),
        "min_s": min(times),
        "peak_mib": memory.get("peak_allocated_mib", "-"),
    }
    loaded.pipe = None
    runtime.release_memory(device)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", help="diffusers pipeline folder or cached repo id (default: tiny random SD)"
    )
    parser.add_argument("--devices", nargs="*", help="devices to try (default: every available one)")
    parser.add_argument("--size", type=int, default=64, help="width and height in pixels (multiple of 8)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per image")
    parser.add_argument("--repeat", type=int, default=3, help="timed images per device, after one warm-up")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float16", "bfloat16", "float32"])
    parser.add_argument("--cpu-threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--prompt", default="a photo of a red cat on the sky")
    args = parser.parse_args()

    import diffusers
    import torch
    from agentd_image import runtime

    devices = args.devices or runtime.available_devices()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_tiny(Path(tmp)))
        label = args.model or "tiny random SD (tests/integration/tiny_sd.py)"
        print(f"model: {label}")
        print(
            f"torch {torch.__version__}, diffusers {diffusers.__version__}, CPU threads {args.cpu_threads or torch.get_num_threads()}"
        )
        print(f"{args.size}x{args.size}, {args.steps} steps, {args.repeat} timed images after one warm-up\n")
        header = f"{'device':<28} {'dtype':<9} {'load s':>8} {'1st img s':>10} {'s/img mean':>11} {'s/img min':>10} {'peak MiB':>9}"
        print(header)
        print("-" * len(header))
        for device in devices:
            try:
                r = bench_device(model, device, args)
            except Exception as exc:  # one device failing must not hide the others' numbers
                print(f"{device:<28} failed: {type(exc).__name__}: {exc}")
                continue
            print(
                f"{r['device'][:28]:<28} {r['dtype']:<9} {r['load_s']:>8.3f} {r['first_s']:>10.3f} "
                f"{r['mean_s']:>11.3f} {r['min_s']:>10.3f} {r['peak_mib']!s:>9}"
            )


if __name__ == "__main__":
    main()
