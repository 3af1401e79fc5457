"""Chat models: the registry and ``ModelHandle`` (``registry``), and the built-in providers (``providers``:
llama.cpp in process, OpenAI-compatible APIs, the scripted test model).
"""

from .._lazy import exports

__all__ = ["ModelHandle", "ModelRegistry", "bundled_model_path"]
__getattr__ = exports(
    __name__, {"ModelHandle": "registry", "ModelRegistry": "registry", "bundled_model_path": "registry"}
)
