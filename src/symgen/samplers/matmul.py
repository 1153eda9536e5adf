r"""The CPU matrix-product backend of the compiled sampler path (:mod:`symgen.samplers.compiled`).

PyTorch's CPU ``mm``/``addmm`` call MKL, whose fp32 GEMM runs at about half the speed of oneDNN's on AVX-512
CPUs where MKL does not pick its AVX-512 kernels (measured on the project's AMD EPYC, one thread: 256 x 256 x
256 in 345 us with MKL, 174 us with oneDNN; ``benchmarks/results/samplers.md``). oneDNN has a fixed cost of
about 10 us per call, so small products stay on MKL. Inside ``run_chain(compile=True)`` only, an inductor
post-grad pass rewrites each large fp32 CPU ``mm(a, b)`` / ``addmm(bias, a, b)`` (``M K N >=``
:data:`ONEDNN_MIN_MACS`) as ``mkldnn._linear_pointwise(a, b^T, bias)`` (in the custom op
``symgen::onednn_matmul``), the same product in IEEE fp32 with another summation order. A second pass
turns products with a small right factor (``K N <=`` :data:`LOOP_MAX_KN`) into fused loops. The eager
kernels, and every other computation, keep PyTorch's defaults.

Set ``symgen.samplers.matmul.ONEDNN_MIN_MACS = math.inf`` before the first compiled step to keep MKL.
"""

from __future__ import annotations

import math
import platform
from typing import Any

import torch
from torch import fx

__all__ = ["ONEDNN_MIN_MACS", "LOOP_MAX_KN", "onednn_matmul_pass", "small_matmul_pass", "inductor_options"]

ONEDNN_MIN_MACS: float = 2**21
"""Smallest ``M * K * N`` routed to oneDNN (break-even on the reference CPU is about 1e6)."""

LOOP_MAX_KN: int = 1024
"""Largest ``K * N`` (the weight of a small layer) computed as a fused loop instead of a GEMM call."""


def _onednn_matmul(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``a @ b (+ bias)`` by oneDNN's linear (weight ``b^T``)."""
    return torch.ops.mkldnn._linear_pointwise(a, b.t(), bias, "none", [], "")


def _onednn_matmul_fake(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return a.new_empty((a.shape[0], b.shape[1]))


# ``symgen::onednn_matmul``: an opaque op for inductor (whose own oneDNN lowering needs frozen weights),
# defined with the low-level ``torch.library.Library`` API: its dispatch costs about 7 us per call, against
# about 17 us for a ``torch.library.custom_op`` (which adds autograd and schema checks the compiled,
# gradient-free path does not need); an HMC step on the MLP target makes 40 of these calls.
_LIB = torch.library.Library("symgen", "DEF")
_LIB.define("onednn_matmul(Tensor a, Tensor b, Tensor? bias) -> Tensor")
_LIB.impl("onednn_matmul", _onednn_matmul, "CPU")
torch.library.register_fake("symgen::onednn_matmul", _onednn_matmul_fake, lib=_LIB)


def _val(node: Any) -> torch.Tensor | None:
    return node.meta.get("val") if isinstance(node, fx.Node) else None


def _large_fp32_cpu(a: Any, b: Any) -> bool:
    va, vb = _val(a), _val(b)
    if va is None or vb is None or va.dim() != 2 or vb.dim() != 2:
        return False
    if va.dtype != torch.float32 or vb.dtype != torch.float32 or va.device.type != "cpu":
        return False
    m, k = va.shape
    n = vb.shape[1]
    return all(isinstance(s, int) for s in (m, k, n)) and m * k * n >= ONEDNN_MIN_MACS


def _small(a: Any, b: Any) -> bool:
    va, vb = _val(a), _val(b)
    if va is None or vb is None or va.dim() != 2 or vb.dim() != 2 or va.device.type != "cpu":
        return False
    k, n = vb.shape
    return isinstance(k, int) and isinstance(n, int) and k * n <= LOOP_MAX_KN


def _products(graph: fx.Graph) -> list[tuple[fx.Node, Any, Any, Any]]:
    """``(node, a, b, c)`` of every ``mm(a, b)`` (``c = None``) and ``addmm(c, a, b)`` (beta = alpha = 1)."""
    aten = torch.ops.aten
    out = []
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (aten.mm.default, aten.addmm.default):
            continue
        if node.target is aten.mm.default:
            (a, b), c = node.args, None
        elif node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1 or len(node.args) != 3:
            continue
        else:
            c, a, b = node.args
        out.append((node, a, b, c))
    return out


def small_matmul_pass(graph: fx.Graph) -> None:
    """Rewrite ``mm(a, b)`` / ``addmm(c, a, b)`` with a small ``b`` (``K N <= LOOP_MAX_KN``) as
    ``(a[:, :, None] * b).sum(1) (+ c)``:
    inductor then fuses the product into its loops instead of calling a GEMM for a few hundred
    multiply-adds (XLA does the same with small dots)."""
    aten = torch.ops.aten
    for node, a, b, c in _products(graph):
        if not _small(a, b):
            continue
        with graph.inserting_before(node):
            a3 = graph.call_function(aten.unsqueeze.default, (a, 2))
            a3.meta["val"] = _val(a).unsqueeze(2)
            prod = graph.call_function(aten.mul.Tensor, (a3, b))
            prod.meta["val"] = a3.meta["val"] * _val(b)
            new = graph.call_function(aten.sum.dim_IntList, (prod, [1]))
            new.meta.update(node.meta)
            if c is not None:
                new = graph.call_function(aten.add.Tensor, (c, new))
                new.meta.update(node.meta)
        node.replace_all_uses_with(new)
        graph.erase_node(node)


def onednn_matmul_pass(graph: fx.Graph) -> None:
    """Rewrite large fp32 CPU ``mm(a, b)`` and ``addmm(c, a, b)`` (beta = alpha = 1) to oneDNN's linear: a
    bias ``c`` of shape ``(N,)`` goes into oneDNN, any other ``c`` is added after it."""
    aten = torch.ops.aten
    for node, a, b, c in _products(graph):
        if not _large_fp32_cpu(a, b) or (c is not None and _val(c) is None):
            continue
        bias = c if c is not None and _val(c).dim() == 1 else None
        with graph.inserting_before(node):
            new = graph.call_function(torch.ops.symgen.onednn_matmul.default, (a, b, bias))
            new.meta.update(node.meta)  # same (M, N) output
            if c is not None and bias is None:
                new = graph.call_function(aten.add.Tensor, (c, new))
                new.meta.update(node.meta)
        node.replace_all_uses_with(new)
        graph.erase_node(node)


def _custom_pass() -> Any:
    from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files  # noqa: PLC0415

    class OneDNNMatmul(CustomGraphPass):
        def __call__(self, graph: fx.Graph) -> None:
            onednn_matmul_pass(graph)
            small_matmul_pass(graph)

        def uuid(self) -> Any:  # the pass's source and threshold key inductor's cache
            return (get_hash_for_files((__file__,)), ONEDNN_MIN_MACS, LOOP_MAX_KN)

    return OneDNNMatmul()


def inductor_options() -> dict[str, Any]:
    """``torch.compile(options=...)`` for the compiled samplers: the oneDNN pass where it applies."""
    usable = (
        math.isfinite(ONEDNN_MIN_MACS)
        and torch.backends.mkldnn.is_available()
        and platform.machine().lower() in ("x86_64", "amd64")
    )
    return {"post_grad_custom_post_pass": _custom_pass()} if usable else {}
