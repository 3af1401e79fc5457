"""Live progress of a run's model calls: ``progress`` events for the display, never journaled.

A model call reports tokens as they are generated (see ModelHandle.complete); this turns them into events
carrying the phase, the run's model calls and generated tokens so far, at a bounded rate: one when each call
starts, then at most one every ``min_interval_s`` (the last tokens of a call are covered by the next phase's
events and by run_finished's usage).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

MIN_INTERVAL_S = 0.25  # at most 4 token updates a second per run


class ProgressReporter:
    """One run's ``on_token`` for its model calls: emits ``progress`` events through ``send``.

    ``watch(phase, calls, tokens)`` starts a phase from the run's recorded usage (a phase may retry its call).
    The token count shown never goes down, though a provider's final usage may differ from what streamed.
    """

    def __init__(
        self,
        send: Callable[[str, dict[str, Any]], None],
        min_interval_s: float = MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send = send
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.phase = ""
        self.calls = 0
        self.tokens_before = 0
        self.call_tokens = 0
        self.shown_tokens = 0
        self.sent_at: float | None = None

    def watch(self, phase: str, calls_before: int, tokens_before: int) -> ProgressReporter:
        self.phase, self.calls, self.tokens_before, self.call_tokens = phase, calls_before, tokens_before, 0
        return self

    def __call__(self, tokens: int) -> None:
        """``tokens`` generated so far in the current call; 0 means a new call starts."""
        now = self.clock()
        if tokens == 0:
            self.calls += 1
            self.tokens_before += self.call_tokens
            self.call_tokens = 0
        else:
            self.call_tokens = tokens
            if self.sent_at is not None and now - self.sent_at < self.min_interval_s:
                return
        self.sent_at = now
        self.shown_tokens = max(self.shown_tokens, self.tokens_before + self.call_tokens)
        self.send("progress", {"phase": self.phase, "model_calls": self.calls, "tokens": self.shown_tokens,
                               "call_tokens": self.call_tokens})
