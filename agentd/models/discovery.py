"""Find the GGUF models already on this machine: the Hugging Face hub cache, LM Studio's models folder, Ollama's
blob store (named through its manifests) and the folders in ``model_dirs``.

Each file's metadata is read from its header (``gguf.read_gguf``), never its weights. A broken, partial or
foreign file is listed with the reason instead of stopping the listing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError
from .gguf import GGUFError, GGUFInfo, read_gguf

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_DEFAULT = ("registry.ollama.ai", "library")
SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")  # llama.cpp split files; the first one is the model


@dataclass
class FoundModel:
    """One GGUF found on disk (or a place where one should be), with its metadata or what is wrong with it."""

    id: str  # what `agentd models add NAME ID` takes: hf:ORG/REPO/FILE, lmstudio:..., ollama:NAME:TAG, or a path
    source: str  # huggingface | lmstudio | ollama | model_dirs
    path: str
    info: GGUFInfo | None = None
    problem: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = {"id": self.id, "source": self.source, "path": self.path, "problem": self.problem}
        return data | ({"metadata": self.info.summary()} if self.info else {})


def examine(model_id: str, source: str, path: Path, expected_size: int | None = None) -> FoundModel:
    """Read one file's metadata; the problem is the reader's reason when the file is unusable."""
    found = FoundModel(model_id, source, str(path))
    try:
        if expected_size is not None and path.stat().st_size != expected_size:
            raise GGUFError(f"partial: {path.stat().st_size} bytes of {expected_size} (an interrupted pull?)")
        found.info = read_gguf(path)
    except GGUFError as exc:
        found.problem = str(exc)
    except OSError as exc:  # e.g. a dangling symlink into a cleaned-up blob store
        found.problem = f"cannot read it: {exc.strerror or exc}"
    if found.info is not None and found.info.architecture == "clip":
        found.problem = "a vision projector (mmproj), not a language model"
    return found


# -- where each tool keeps its models ---------------------------------------------------------------------
def hf_hub_dir(env: Mapping[str, str]) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    cache = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else _home(env) / ".cache"
    return cache / "huggingface" / "hub"


def lmstudio_dirs(env: Mapping[str, str]) -> list[Path]:
    return [_home(env) / ".lmstudio" / "models", _home(env) / ".cache" / "lm-studio" / "models"]


def ollama_dirs(env: Mapping[str, str]) -> list[Path]:
    if env.get("OLLAMA_MODELS"):
        return [Path(env["OLLAMA_MODELS"]).expanduser()]
    return [_home(env) / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def _gguf_files(folder: Path) -> Iterator[Path]:
    """The .gguf files under a folder, without the 2nd..Nth parts of split models."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*.gguf")):
        shard = SHARD.search(path.name)
        if shard is None or int(shard.group(1)) == 1:
            yield path


def scan_hf(hub: Path) -> Iterator[FoundModel]:
    """models--ORG--REPO/snapshots/REV/FILE.gguf (links into blobs/); the revision refs/main names wins."""
    for repo in sorted(hub.glob("models--*")):
        repo_id = repo.name[len("models--") :].replace("--", "/")
        main = repo / "refs" / "main"
        current = main.read_text().strip() if main.is_file() else ""
        snapshots = sorted((repo / "snapshots").glob("*"), key=lambda s: s.name == current)
        by_id = {}
        for snapshot in snapshots:
            for path in _gguf_files(snapshot):
                model_id = f"hf:{repo_id}/{path.relative_to(snapshot).as_posix()}"
                by_id[model_id] = examine(model_id, "huggingface", path)
        yield from by_id.values()
        for partial in sorted((repo / "blobs").glob("*.incomplete")):
            size = partial.stat().st_size
            yield FoundModel(f"hf:{repo_id}", "huggingface", str(partial),
                             problem=f"download incomplete: {size} bytes so far")


def scan_lmstudio(root: Path) -> Iterator[FoundModel]:
    """PUBLISHER/REPO/FILE.gguf."""
    for path in _gguf_files(root):
        yield examine(f"lmstudio:{path.relative_to(root).as_posix()}", "lmstudio", path)


def scan_ollama(root: Path) -> Iterator[FoundModel]:
    """manifests/REGISTRY/NAMESPACE/NAME/TAG name a model layer, stored as blobs/sha256-HEX."""
    manifests = root / "manifests"
    if not manifests.is_dir():
        return
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
        parts = manifest.relative_to(manifests).parts
        name = _ollama_name(parts)
        model_id = f"ollama:{name}"
        try:
            layers = json.loads(manifest.read_text(encoding="utf-8"))["layers"]
            layer = next(x for x in layers if x.get("mediaType") == OLLAMA_MODEL_LAYER)
            blob = root / "blobs" / str(layer["digest"]).replace(":", "-")
        except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
            yield FoundModel(model_id, "ollama", str(manifest), problem=f"unreadable manifest: {exc!r}")
            continue
        if not blob.is_file():
            yield FoundModel(model_id, "ollama", str(blob), problem="the manifest's model blob is missing")
            continue
        size = layer.get("size")
        yield examine(model_id, "ollama", blob, int(size) if isinstance(size, int) else None)


def _ollama_name(parts: tuple[str, ...]) -> str:
    """registry.ollama.ai/library/qwen2.5/3b -> qwen2.5:3b, as `ollama list` shows it."""
    *where, model, tag = parts if len(parts) >= 2 else ("?", *parts)
    if tuple(where) == OLLAMA_DEFAULT:
        return f"{model}:{tag}"
    if where and where[0] == OLLAMA_DEFAULT[0]:
        where = where[1:]
    return "/".join([*where, model]) + f":{tag}"


def discover(config: Config, env: Mapping[str, str] | None = None, everywhere: bool = True) -> list[FoundModel]:
    """Every GGUF in ``model_dirs`` and (``everywhere``) the usual places, each listed once (by its file)."""
    env = os.environ if env is None else env
    found: list[FoundModel] = []
    if everywhere:
        found += scan_hf(hf_hub_dir(env))
        for folder in lmstudio_dirs(env):
            found += scan_lmstudio(folder)
        for folder in ollama_dirs(env):
            found += scan_ollama(folder)
    for listed in config.model_dirs:
        found += (examine(str(path), "model_dirs", path) for path in _gguf_files(Path(listed).expanduser()))
    seen: set[str] = set()
    unique = []
    for item in found:
        key = os.path.realpath(item.path)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def resolve(config: Config, ref: str, env: Mapping[str, str] | None = None) -> FoundModel:
    """A GGUF path, or a discovered id (``hf:ORG/REPO/FILE``, ``ollama:NAME:TAG``, ...; the part after the
    source prefix is enough when only one model has it); ConfigError when it is neither or is broken."""
    path = Path(ref).expanduser()
    if path.is_file():
        found = examine(str(path.resolve()), "path", path.resolve())
    else:
        candidates = discover(config, env)
        matches = [f for f in candidates if f.id == ref] or [f for f in candidates if f.id.split(":", 1)[1] == ref]
        if len(matches) != 1:
            ids = ", ".join(sorted(f.id for f in candidates if not f.problem)) or "none found"
            what = "matches several models" if matches else "is neither a file nor a discovered model"
            raise ConfigError(f"{ref!r} {what}; give a .gguf path or one of: {ids} (see `agentd models list --all`)")
        found = matches[0]
    if found.problem:
        raise ConfigError(f"{found.path}: {found.problem}")
    return found
