"""Latency-aware float fallback: leave in float the convolutions whose int8 kernel is slower than
their float kernel on this CPU.

Why: ONNX Runtime's int8 convolution wins on wide layers, but on narrow ones (a 3-channel stem,
8-16 channels at high resolution) its im2col and requantisation cost more than the arithmetic
it saves. On the Highway detector at 320 px (AVX-512 VNNI, 1 thread) the 3->16 stem took 0.66 ms
in int8 against 0.31 ms in float. Each layer's two kernels are timed alone on the layer's real
input shape; then the whole graph is timed with and without the fallback (interleaved), and the
fallback is kept only when the whole graph is faster: what ships is what was measured."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

from deepshrink.metrics.latency import paired_latency_ms
from deepshrink.quantization.api import quantize
from deepshrink.quantization.config import Method, QuantizeConfig
from deepshrink.quantization.folding import fold_bn_layers
from deepshrink.quantization.graph import trace
from deepshrink.quantization.prepare import make_plan

OPSET = 17


@dataclass(frozen=True)
class LayerTiming:
    """One convolution's kernels timed alone at its input shape (summed over its calls)."""

    layer: str
    input_shape: tuple[int, ...]
    float_ms: float
    int8_ms: float

    @property
    def int8_slower(self) -> bool:
        return self.int8_ms > self.float_ms


@dataclass
class FallbackResult:
    """`keep_float`: the layers to add to the config's keep_float (empty when the whole graph was
    not faster with them in float); `candidates`: the layers whose int8 kernel was slower."""

    keep_float: tuple[str, ...]
    candidates: tuple[str, ...]
    layers: list[LayerTiming]
    int8_ms: float | None = None
    fallback_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"keep_float": list(self.keep_float), "candidates": list(self.candidates),
                "int8_ms": self.int8_ms, "fallback_ms": self.fallback_ms,
                "layers": [asdict(t) | {"int8_slower": t.int8_slower} for t in self.layers]}


def conv_input_shapes(model: nn.Module, input_size: tuple[int, ...], batch: int = 1) -> dict[str, list[tuple[int, ...]]]:
    """Each Conv2d's input shape in one forward pass (a layer called on several inputs, such as a
    head shared across pyramid levels, lists each call)."""
    shapes: dict[str, list[tuple[int, ...]]] = {}
    hooks = [m.register_forward_pre_hook(lambda _, args, name=n: shapes.setdefault(name, []).append(tuple(args[0].shape)))
             for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(batch, *input_size))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def conv_kernel_graphs(conv: nn.Conv2d, shape: tuple[int, ...], folder: Path) -> tuple[Path, Path]:
    """(float Conv, int8 QLinearConv) ONNX graphs of `conv` alone at input `shape`. The float graph
    is the layer itself; the int8 one takes and gives uint8 with int8 per-channel weights, as the
    deployed QDQ graph runs once ONNX Runtime has fused it. Kernel speed does not depend on the
    values, so its scales and codes are placeholders."""
    out_channels, kernel = conv.out_channels, list(conv.kernel_size)
    attrs = {"kernel_shape": kernel, "strides": list(conv.stride), "dilations": list(conv.dilation),
             "pads": _pads(conv), "group": conv.groups}
    rng = np.random.default_rng(0)
    weight = tuple(conv.weight.shape)
    tensors = {
        "w": conv.weight.detach().float().numpy(),
        "b": np.zeros(out_channels, np.float32) if conv.bias is None else conv.bias.detach().float().numpy(),
        "x_scale": np.float32(0.02), "x_zp": np.uint8(128), "y_scale": np.float32(0.02), "y_zp": np.uint8(0),
        "w_q": rng.integers(-127, 128, weight, dtype=np.int8), "w_scale": np.full(out_channels, 0.01, np.float32),
        "w_zp": np.zeros(out_channels, np.int8), "b_q": np.zeros(out_channels, np.int32),
    }
    out_shape = [shape[0], out_channels, None, None]
    graphs = {
        "float": (helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs), TensorProto.FLOAT, ["w", "b"]),
        "int8": (helper.make_node("QLinearConv", ["x", "x_scale", "x_zp", "w_q", "w_scale", "w_zp", "y_scale", "y_zp", "b_q"],
                                  ["y"], **attrs), TensorProto.UINT8,
                 ["x_scale", "x_zp", "w_q", "w_scale", "w_zp", "y_scale", "y_zp", "b_q"]),
    }
    paths = []
    for kind, (node, dtype, names) in graphs.items():
        graph = helper.make_graph([node], f"{kind}_conv", [helper.make_tensor_value_info("x", dtype, list(shape))],
                                  [helper.make_tensor_value_info("y", dtype, out_shape)],
                                  [numpy_helper.from_array(np.asarray(tensors[n]), n) for n in names])
        path = folder / f"{kind}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), path)
        paths.append(path)
    return paths[0], paths[1]


def _pads(conv: nn.Conv2d) -> list[int]:
    """ONNX pads [top, left, bottom, right], 'same' and 'valid' included (the extra pixel of an
    uneven 'same' goes after, as PyTorch puts it)."""
    if conv.padding == "valid":
        return [0, 0, 0, 0]
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        return [t // 2 for t in total] + [t - t // 2 for t in total]
    return list(conv.padding) * 2


def layer_timings(model: nn.Module, input_size: tuple[int, ...], config: QuantizeConfig | dict | None = None, *,
                  threads: int = 1, budget_s: float = 0.5, batch: int = 1) -> list[LayerTiming]:
    """Float against int8 kernel time of every convolution `config` would quantise (after BN
    folding, as deployed)."""
    config = QuantizeConfig.coerce(config)
    folded, _ = fold_bn_layers(model, config.advanced.untie_shared)
    quantised = set(make_plan(trace(folded), config)["weights"])
    shapes = conv_input_shapes(folded, input_size, batch)
    timings = []
    with tempfile.TemporaryDirectory(prefix="deepshrink_fallback_") as tmp:
        for name, calls in shapes.items():
            if name not in quantised:
                continue
            conv = folded.get_submodule(name)
            total = {"float": 0.0, "int8": 0.0}
            for i, shape in enumerate(calls):
                folder = Path(tmp) / f"{name}.{i}"
                folder.mkdir()
                float_path, int8_path = conv_kernel_graphs(conv, shape, folder)
                measured = paired_latency_ms({"float": float_path, "int8": int8_path}, shape[0], shape[1:],
                                             threads=threads, budget_s=budget_s)
                total = {k: total[k] + measured[k] for k in total}
            timings.append(LayerTiming(name, calls[0], round(total["float"], 4), round(total["int8"], 4)))
    return timings


def latency_fallback(model: nn.Module, calibration_data: Any, input_size: tuple[int, ...],
                     config: QuantizeConfig | dict | None = None, *, threads: int = 1, budget_s: float = 0.5,
                     graph_budget_s: float = 5.0, folder: str | Path | None = None) -> FallbackResult:
    """The layers to keep in float so the int8 model runs faster on this CPU. The whole-graph
    check quantises the model twice with post-training quantisation: every bit-width deploys as
    int8 kernels, so a QAT config is timed through its W8A8 PTQ counterpart (no training)."""
    config = _timing_config(QuantizeConfig.coerce(config))
    timings = layer_timings(model, input_size, config, threads=threads, budget_s=budget_s)
    candidates = tuple(t.layer for t in timings if t.int8_slower)
    if not candidates:
        return FallbackResult((), (), timings)
    with tempfile.TemporaryDirectory(prefix="deepshrink_fallback_") as tmp:
        out = Path(folder or tmp)
        out.mkdir(parents=True, exist_ok=True)
        fallback = QuantizeConfig.coerce(config, keep_float=(*config.keep_float, *candidates))
        paths = {name: quantize(model, calibration_data, config=c, onnx_path=out / f"{name}.onnx", input_size=input_size).onnx_path
                 for name, c in (("int8", config), ("fallback", fallback))}
        measured = paired_latency_ms(paths, 1, input_size, threads=threads, budget_s=graph_budget_s)
    faster = measured["fallback"] < measured["int8"]
    return FallbackResult(candidates if faster else (), candidates, timings,
                          round(measured["int8"], 4), round(measured["fallback"], 4))


def _timing_config(config: QuantizeConfig) -> QuantizeConfig:
    advanced = config.advanced.model_copy(update={"latency_fallback": False})  # no search inside the search
    if config.method is Method.PTQ:
        return config.model_copy(update={"advanced": advanced})
    return QuantizeConfig(keep_float=config.keep_float, calibration_size=config.calibration_size,
                          first_last_bits=config.first_last_bits, advanced=advanced)
