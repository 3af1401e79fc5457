"""Grammar-constrained greedy decoding that asks the grammar about the model's own pick first.

llama-cpp-python puts a GBNF grammar in its sampler chain before the greedy pick, so llama.cpp checks the
whole vocabulary against the grammar for every token: 49,152 token texts decoded and matched, about 3 ms a
token on the 2-core machines here, where the bundled model decodes a token in 8-25 ms. Under a grammar the
model's highest-scoring token is usually allowed already (the prompt asks for this JSON), and when it is, it is
also the highest-scoring allowed token: exactly what the chain would pick. So this checks that one token (a few
microseconds), and applies the grammar to the whole vocabulary only when the model's pick is refused (llama.cpp's
own common sampler does the same). The tokens are the same as with the grammar in the chain, at temperature 0.

Used as a llama-cpp-python logits processor, one per model call: it follows the tokens the sampler chose
through the ``input_ids`` it is shown, and starts over when they are not the continuation of its last call.
"""

from __future__ import annotations

import ctypes
import logging
import weakref
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class GreedyGrammar:
    """A logits processor constraining greedy decoding to a GBNF grammar (checked with llama.cpp first)."""

    def __init__(self, llama: Any, grammar: str) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self._sampler = llama_cpp.llama_sampler_init_grammar(llama._model.vocab, grammar.encode("utf-8"), b"root")
        if not self._sampler:
            raise ValueError("llama.cpp rejected the output grammar (see its log above)")
        weakref.finalize(self, llama_cpp.llama_sampler_free, self._sampler)
        self._one = (llama_cpp.llama_token_data * 1)()
        self._all: Any = None  # the whole vocabulary, built on the first refused pick
        self._seen = -1  # len(input_ids) at the last call; -1 before the first
        self.calls = 0  # tokens sampled under this grammar
        self.refused = 0  # of them, how many times the model's own pick was refused
        self.broken = False  # the sampler chose a token this grammar refuses: no longer constraining

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """Scores unchanged when the best-scoring token is allowed, else with every refused token at -inf."""
        count = len(input_ids)
        if count != self._seen + 1 and self._seen >= 0:  # a new prompt (a retry reusing this processor)
            self._lib.llama_sampler_reset(self._sampler)
            self.broken = False
        elif count == self._seen + 1 and not self.broken:
            self._accept(int(input_ids[-1]))
        self._seen = count
        if self.broken:
            return scores
        self.calls += 1
        best = int(np.argmax(scores))
        if self._allows(best):
            return scores
        self.refused += 1
        return self._constrain(scores)

    def _allows(self, token: int) -> bool:
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 0.0, 0.0
        self._apply(self._one, 1)
        return bool(np.isfinite(self._one[0].logit))

    def _accept(self, token: int) -> None:
        # The sampler chose what this processor allowed, unless a sampler after it changed the pick. Checked
        # again because llama.cpp aborts the process when a grammar is made to accept a token it refuses, and an
        # exception raised here would vanish in llama.cpp's callback: the call goes on unconstrained, and its
        # reply fails to parse like any other bad reply.
        if not self._allows(token):
            log.warning("token %d was sampled although the output grammar refuses it; the rest of this reply "
                        "is not constrained", token)
            self.broken = True
            return
        self._lib.llama_sampler_accept(self._sampler, token)

    def _constrain(self, scores: Any) -> Any:
        if self._all is None or len(self._all) != len(scores):
            self._all = (self._lib.llama_token_data * len(scores))()
            np.frombuffer(self._all, dtype=TOKEN_DATA)["id"] = np.arange(len(scores), dtype=np.intc)
        view = np.frombuffer(self._all, dtype=TOKEN_DATA)
        view["logit"], view["p"] = scores, 0.0
        self._apply(self._all, len(scores))
        return np.where(np.isfinite(view["logit"]), scores, -np.inf).astype(scores.dtype, copy=False)

    def _apply(self, data: Any, size: int) -> None:
        candidates = self._lib.llama_token_data_array(data=data, size=size, selected=-1, sorted=False)
        self._lib.llama_sampler_apply(self._sampler, ctypes.byref(candidates))
