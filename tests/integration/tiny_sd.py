"""A tiny, randomly initialised Stable Diffusion pipeline for tests (no model hub needed).

Built from diffusers' and transformers' own config classes, saved with ``save_pretrained`` into a folder the
image plugin then loads exactly like a real model (``DiffusionPipeline.from_pretrained(..., local_files_only)``).
Weights are seeded, so every build is the same model; the whole thing is a few hundred kB and generates a
64x64 image in well under a second on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

# Words the tokenizer knows as whole tokens; anything else falls back to single characters.
WORDS = ("a", "cat", "dog", "red", "blue", "photo", "of", "the", "on", "sky")


def _bytes_to_unicode() -> list[str]:
    """The printable stand-ins CLIP's byte-level BPE uses for the 256 byte values (same table as GPT-2)."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """Write a CLIP-style ``vocab.json`` and ``merges.txt``: every byte, every byte at a word's end, WORDS."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for symbol in _bytes_to_unicode():
        vocab.setdefault(symbol, len(vocab))
    for symbol in _bytes_to_unicode():
        vocab.setdefault(symbol + "</w>", len(vocab))
    merges: list[str] = []
    for word in WORDS:
        # Merge left to right: "c a" -> "ca", "ca t</w>" -> "cat</w>".
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.setdefault(pieces[0], len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
    unique = list(dict.fromkeys(merges))
    merges_file.write_text("#version: 0.2\n" + "\n".join(unique) + "\n", encoding="utf-8")
    return vocab_file, merges_file


_BUILT: dict[str, Path] = {}


def cached_tiny_sd(tmp_path_factory) -> Path:
    """The tiny pipeline, built once per test session (into pytest's session temp dir) and reused."""
    if "path" not in _BUILT:
        _BUILT["path"] = build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "pipeline")
    return _BUILT["path"]


def build_tiny_sd(target: Path, seed: int = 0) -> Path:
    """Build the tiny pipeline and save it to ``target``; returns ``target``."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    source = target.parent / f"{target.name}-tokenizer-src"
    write_tokenizer_files(source)
    # from_pretrained on the two files works the same with transformers 4 (slow/fast) and 5 (one class).
    tokenizer = CLIPTokenizer.from_pretrained(str(source), model_max_length=77, local_files_only=True)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    torch.manual_seed(seed)
    # Four blocks: the VAE downsamples three times, a scale factor of 8 like every real SD model.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=64,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(target)
    return target
