"""Rewrites a BERT graph's attention blocks into onnxruntime's fused ``Attention`` operator (com.microsoft).

onnxruntime's own BERT optimizer does not recognise the graph torch's dynamo exporter writes for
scaled-dot-product attention (the packaged all-MiniLM-L6-v2 is one): the query and the key are each scaled by
head_size**-0.25, the mask is built from ``And``/``GatherND``/``Where``, and a fully masked row's NaNs are
replaced by ``Where(IsNaN(p), 0, p)`` after the softmax. This module matches each block by its data flow
instead of by exact operator lists:

    Softmax(Add(MatMul(.. q ..), mask)) [-> Where(IsNaN)] -> MatMul(., .. v ..) -> Transpose -> Reshape

where q, k and v each lead back, through Reshape/Transpose/Mul-by-a-constant only, to ``Add(MatMul(x, W), b)``
with the same ``x``. The block becomes one ``Attention(x, [Wq Wk Wv], [bq bk bv], attention_mask)``: the same
products, in one kernel. A padding mask of 0/1 per key is what ``Attention`` takes; masked keys get -10000
before the softmax instead of -inf, which is exp() == 0 in fp32 all the same. Rows are never fully masked here
(every text has its [CLS] token), so dropping the NaN guard changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

MASK = "agentd_attention_mask_int32"
_PASS_THROUGH = {"Reshape", "Transpose", "Mul"}


def fuse_attention(model: Any, mask_input: str = "attention_mask") -> int:
    """Rewrite every matching attention block of ``model`` (an onnx ModelProto with constant weights) in
    place; returns how many were rewritten (0: the graph is left as it was)."""
    from onnx import helper

    graph = model.graph
    index = _Graph(graph)
    found = [block for block in (_match(index, node) for node in graph.node if node.op_type == "Softmax")
             if block is not None]
    if not found or mask_input not in {i.name for i in graph.input}:
        return 0
    for index, (x, weights, biases, heads, last) in enumerate(found):
        prefix = f"agentd_attention_{index}"
        graph.initializer.extend([_tensor(weights, f"{prefix}_qkv_weight", axis=1),
                                  _tensor(biases, f"{prefix}_qkv_bias", axis=0)])
        graph.node.append(helper.make_node(
            "Attention", [x, f"{prefix}_qkv_weight", f"{prefix}_qkv_bias", MASK], [last.output[0]],
            name=prefix, domain="com.microsoft", num_heads=heads,
        ))
        graph.node.remove(last)
    graph.node.append(helper.make_node("Cast", [mask_input], [MASK], name="agentd_mask_int32", to=6))  # INT32
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _prune(graph)
    _sort(graph)
    return len(found)


class _Graph:
    """Who produces and who consumes each value of a graph, and its constant tensors."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.constants = {t.name: t for t in graph.initializer}
        self._array = numpy_helper.to_array

    def constant(self, name: str) -> Any:
        return self._array(self.constants[name]) if name in self.constants else None

    def only_consumer(self, name: str, op_type: str) -> Any:
        found = self.consumers.get(name, [])
        return found[0] if len(found) == 1 and found[0].op_type == op_type else None

    def linear_above(self, name: str, scales: list[float]) -> tuple[str, Any, Any] | None:
        """(x, W, b) of the ``Add(MatMul(x, W), b)`` that ``name`` is a reshaped/transposed/scaled view of;
        constant scale factors met on the way are appended to ``scales``."""
        node = self.producer.get(name)
        for _ in range(8):
            if node is None:
                return None
            if node.op_type == "Add":
                return self._linear(node)
            if node.op_type not in _PASS_THROUGH:
                return None
            if node.op_type == "Mul":
                factor = self.constant(node.input[1])
                if factor is None or factor.size != 1:
                    return None
                scales.append(float(factor.reshape(-1)[0]))
            node = self.producer.get(node.input[0])
        return None

    def _linear(self, add: Any) -> tuple[str, Any, Any] | None:
        for matmul_out, bias in (add.input, add.input[::-1]):
            matmul = self.producer.get(matmul_out)
            if matmul is not None and matmul.op_type == "MatMul" and bias in self.constants:
                weight = self.constant(matmul.input[1])
                if weight is not None and weight.ndim == 2:
                    return matmul.input[0], weight, self.constant(bias)
        return None


def _match(g: _Graph, softmax: Any) -> tuple[str, list[Any], list[Any], int, Any] | None:
    """(x, [Wq, Wk, Wv], [bq, bk, bv], heads, the block's last node) for the block around ``softmax``."""
    import numpy as np

    scores = g.producer.get(softmax.input[0])
    if scores is None or scores.op_type != "Add":
        return None
    qk = next((g.producer[i] for i in scores.input if i in g.producer and g.producer[i].op_type == "MatMul"), None)
    guard = next((n for n in g.consumers.get(softmax.output[0], []) if n.op_type == "Where"), None)
    probs = guard.output[0] if guard is not None else softmax.output[0]
    pv = next((n for n in g.consumers.get(probs, []) if n.op_type == "MatMul" and n.input[0] == probs), None)
    transpose = pv and g.only_consumer(pv.output[0], "Transpose")
    last = transpose and g.only_consumer(transpose.output[0], "Reshape")
    if qk is None or last is None:
        return None
    q_scales: list[float] = []
    q, k, v = g.linear_above(qk.input[0], q_scales), g.linear_above(qk.input[1], q_scales), g.linear_above(pv.input[1], [])
    if q is None or k is None or v is None or not q[0] == k[0] == v[0]:
        return None
    hidden = q[1].shape[1]
    head_size = round(float(np.prod(q_scales or [1.0])) ** -2)  # scores are scaled by 1/sqrt(head_size) in all
    if head_size <= 0 or hidden % head_size or {w.shape for w in (q[1], k[1], v[1])} != {q[1].shape}:
        return None
    return q[0], [q[1], k[1], v[1]], [q[2], k[2], v[2]], hidden // head_size, last


def _tensor(parts: list[Any], name: str, axis: int) -> Any:
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(np.concatenate(parts, axis=axis).astype(np.float32), name)


def _prune(graph: Any) -> None:
    """Drop the nodes and constants nothing reads any more (the old blocks and their mask arithmetic)."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        dead = [node for node in graph.node if not any(o in read for o in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(tensor)


def _sort(graph: Any) -> None:
    """Order the nodes so each comes after what it reads (ONNX requires it; the new nodes were appended)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        now = [node for node in pending if all(name in ready for name in node.input)]
        if not now:
            raise RuntimeError("the rewritten graph has a cycle or a missing input")
        for node in now:
            ready.update(node.output)
        ordered += now
        taken = {id(node) for node in now}
        pending = [node for node in pending if id(node) not in taken]
    del graph.node[:]
    graph.node.extend(ordered)
