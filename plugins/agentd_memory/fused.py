"""A fused copy of the offline embedding model, built once per model file and kept in AGENTD_HOME's cache.

The packaged all-MiniLM-L6-v2 graph computes each layer's attention from about forty small operators (head
reshapes, scaling, the mask's ``Where``/``And``/``IsNaN``) and its GELU from five. The copy has one fused
``Attention`` operator per layer (agentd_memory.attention: onnxruntime's optimizer does not recognise this
export's attention) and ``BiasGelu`` (onnxruntime's BERT optimizer), 51 nodes instead of about 400: the same
products in fewer kernels. The int8 weights are first folded to fp32, which onnxruntime does anyway when it
loads the plain model. Building needs the ``onnx`` package; running the copy does not.

A built copy is checked against the plain model on a padded batch (the hidden states of real tokens must agree
within ``TOLERANCE``) before it is used or saved, so the vectors stay the model's (within 1e-6 after pooling);
collections keep the plain model's id. It is saved owner-only under ``<cache>/onnx-fused``, named by a digest of
what it depends on (onnxruntime's and onnx's versions, the model file's path, size and mtime) and checked by
length and CRC when read. The cache is an optimisation: a damaged file is rebuilt, and anything else going wrong
(no ``onnx``, a graph with nothing to fuse, an unwritable folder) logs one warning and the plain model runs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentd.home import keep_newest, read_checked, write_checked

log = logging.getLogger(__name__)

MAGIC = b"agentd-fused-onnx\x00v1\n"
FOLDER = "onnx-fused"
KEEP_FILES = 2  # ~90 MB each (fp32 weights): the packaged model and one user copy
DISABLED = ["SkipLayerNormFusion"]
TOLERANCE = 1e-4  # on hidden states (|x| ~ 1); the pooled, normalised vectors then agree within ~1e-6
_warned: set[str] = set()


def fused_model(model_path: Path, cache_dir: Path | None, build: Callable[[Path], bytes] | None = None) -> bytes | None:
    """The fused model for ``model_path`` as ONNX bytes: read from ``cache_dir``/onnx-fused, else built and saved
    there. None, after one warning per reason and process, when there is none to be had: use the plain model."""
    if cache_dir is None:
        return None
    build = build or build_fused
    directory = cache_dir / FOLDER
    try:
        key = cache_key(model_path)
    except OSError as exc:
        _warn("model", f"no fused embedding model: cannot read {model_path} ({exc.strerror or exc})")
        return None
    path = directory / f"{key}.onnx"
    found = _read(path, key)
    if found is not None:
        return found
    try:
        log.info("building a fused copy of the embedding model %s (once per model file)", model_path)
        model = build(model_path)
    except Exception as exc:  # onnx missing, an optimizer failure, a graph it cannot fuse: all mean "plain"
        _warn("build", f"using the plain embedding model: its fused copy could not be built ({exc})")
        return None
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_checked(path, MAGIC, {"key": key, "bytes": len(model), "crc32": zlib.crc32(model)}, (model,))
    except OSError as exc:
        _warn("write", f"using the plain embedding model: cannot save its fused copy in {directory} "
                       f"({exc.strerror or exc})")
        return None
    keep_newest(directory, "*.onnx", KEEP_FILES)
    return model


def cache_key(model_path: Path) -> str:
    """A digest of everything a fused copy depends on; OSError when the model file cannot be read."""
    stat = model_path.stat()
    parts = [MAGIC.decode(errors="replace"), _version("onnxruntime"), _version("onnx"),
             str(model_path.resolve()), stat.st_size, stat.st_mtime_ns]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def build_fused(model_path: Path) -> bytes:
    """Fold the int8 weights, fuse the attention blocks and GELUs, and check the result against the plain
    model; raises on any failure (no ``onnx``, nothing to fuse, different outputs)."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from .attention import fuse_attention

    with tempfile.TemporaryDirectory(prefix="agentd-fuse-") as tmp:
        folded, attended = Path(tmp) / "folded.onnx", Path(tmp) / "attention.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # standard ONNX ops only
        options.optimized_model_filepath = str(folded)
        options.log_severity_level = 3
        ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(folded))
        if not fuse_attention(graph):
            raise RuntimeError("no attention block found to fuse")
        onnx.save(graph, str(attended))
        _quiet_optimizer()
        fusions = FusionOptions("bert")
        fusions.enable_skip_layer_norm = False  # measured slower than Add + LayerNormalization here
        optimized = optimize_model(str(attended), model_type="bert", opt_level=0, optimization_options=fusions)
        model: bytes = optimized.model.SerializeToString()
    check_same_outputs(str(model_path), model)
    return model


def session_options() -> dict[str, Any]:
    """Keyword arguments for the InferenceSession of a fused copy: onnxruntime would fuse each Add +
    LayerNormalization into its SkipLayerNormalization, which measured 7% of a run slower on the CPUs here."""
    return {"providers": ["CPUExecutionProvider"], "disabled_optimizers": DISABLED}


def check_same_outputs(plain: str | bytes, fused: str | bytes) -> float:
    """Run both models on a padded batch of two; raise unless the real tokens' hidden states agree within
    TOLERANCE. Returns the largest difference."""
    import numpy as np

    sessions = [_session(plain, providers=["CPUExecutionProvider"]), _session(fused, **session_options())]
    ids = np.array([[101, 7592, 2088, 1010, 2023, 2003, 1037, 3231, 1012, 102],
                    [101, 2460, 23032, 102, 0, 0, 0, 0, 0, 0]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    outputs = []
    for session in sessions:
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in {i.name for i in session.get_inputs()}:
            feeds["token_type_ids"] = np.zeros_like(ids)
        outputs.append(session.run(None, feeds)[0])
    real = mask.astype(bool)
    difference = float(np.abs(outputs[0][real] - outputs[1][real]).max())
    if not difference <= TOLERANCE:  # also catches NaN
        raise RuntimeError(f"the fused model's outputs differ from the plain model's by {difference:.2g}")
    return difference


def _session(model: str | bytes, **kwargs: Any) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, **kwargs)


def _read(path: Path, key: str) -> bytes | None:
    def model(f: Any, header: dict[str, Any]) -> bytes:
        found = f.read(header["bytes"] + 1)
        if len(found) != header["bytes"]:
            raise ValueError("truncated or too long")
        if zlib.crc32(found) != header["crc32"]:
            raise ValueError("checksum mismatch")
        return found

    return read_checked(path, MAGIC, key, model, "fused embedding model")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _warn(reason: str, message: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        log.warning(message)


def _quiet_optimizer() -> None:
    """onnxruntime's optimizer logs every fusion it tries (INFO, some WARNING) under its modules' bare names;
    agentd's log is not the place. Only those loggers are turned down."""
    import onnxruntime.transformers as package

    folder = str(Path(package.__file__).parent)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(folder):
            logging.getLogger(name).setLevel(logging.ERROR)
