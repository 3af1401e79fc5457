"""The engine: one run's plan → critique → act → tool → feedback loop, its prompts, structured output and state.

``Engine`` drives runs (``loop``); ``LoopState`` is a run folded from its journaled phases (``state``).
"""

from .._lazy import exports

__all__ = ["Engine", "LoopState"]
__getattr__ = exports(__name__, {"Engine": "loop", "LoopState": "state"})
