"""Where the quantisers go (the plan) and building the fake-quant model from it.

Weights: every nn.Conv1d/Conv2d/nn.Linear not kept in float is swapped for its Quant* twin.
Activations: a quantiser sits on each tensor that enters a quantised layer or a residual add,
shared by all such consumers, so each tensor is quantised once - exactly where the exported
graph gets its QuantizeLinear/DequantizeLinear pair and ONNX Runtime runs QLinearConv/QLinearAdd.
Residual sums take their inputs at `residual_bits` (8 by default): below 8 bits a block output
read by a conv and by a shortcut gets one quantiser per precision, the narrower reading the wider
one's output (`source`), so the producer has a single QuantizeLinear to fuse with: two quantisers
side by side on one float tensor kept every such Add (and the stem conv) out of int8 kernels.
The plan is JSON (node names of the traced graph), so the "quantize" transform can replay it."""

from __future__ import annotations

import fnmatch
from typing import Any

import torch.fx as fx
import torch.nn as nn

from deepshrink.errors import ConfigError, ModelError, UnsupportedOpError
from deepshrink.quantization.act_quant import ActQuant, build_act_quant
from deepshrink.quantization.config import DEFAULT_ACT, DEFAULT_WEIGHT, ActQuantizer, QuantizeConfig
from deepshrink.quantization.cpu import int8_dot_saturates
from deepshrink.quantization.graph import finish, is_add, is_homogeneous, module_of, set_module, weighted_function_nodes
from deepshrink.quantization.modules import QUANT_LAYERS, QUANT_OF
from deepshrink.quantization.weight_quant import build_weight_quant

UNSUPPORTED_LAYERS = (
    nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Bilinear, nn.RNNBase,
    nn.MultiheadAttention, nn.Embedding,
)
ACT_MODULE = "act_quant"


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def make_plan(graph_module: fx.GraphModule, config: QuantizeConfig) -> dict[str, Any]:
    """Decide which layers and tensors are quantised, and how (see module docstring)."""
    nodes = list(graph_module.graph.nodes)
    layers = [n for n in nodes if type(module_of(graph_module, n)) in QUANT_OF]
    unsupported = {str(n.target): n for n in nodes if isinstance(module_of(graph_module, n), UNSUPPORTED_LAYERS)}
    unsupported.update({n.name: n for n in weighted_function_nodes(graph_module)})
    names = [str(n.target) for n in layers] + list(unsupported)
    for pattern in config.keep_float:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise ConfigError(f"keep_float: '{pattern}' matches no layer; layers: {', '.join(names)}")
    for name, node in unsupported.items():
        if not matches(name, config.keep_float):
            what = type(module_of(graph_module, node)).__name__ if node.op == "call_module" else f"call to {node.target}"
            raise UnsupportedOpError(
                f"layer '{name}' ({what}) cannot be quantised; leave it in float with keep_float=['{name}'] "
                f"(CLI: --keep-float {name})"
            )
    quantised = [n for n in layers if not matches(str(n.target), config.keep_float)]
    if not quantised:
        raise ModelError("no conv or linear layer left to quantise (all are in keep_float, or the model has none)")
    edge = {quantised[0].name, quantised[-1].name} if config.first_last_bits is not None else set()
    reduce_range = int8_dot_saturates() if config.advanced.reduce_range is None else config.advanced.reduce_range
    weights, wanted = {}, []  # wanted: (producer, consumer, kind, bits)
    for node in quantised:
        target = str(node.target)
        if node.name in edge:
            kind, bits = DEFAULT_WEIGHT[config.method], config.first_last_bits
            act = (DEFAULT_ACT[config.method], config.first_last_bits)
        else:
            kind, bits = config.weight, config.layer_bits.get(target, config.bits)
            act = (config.activation, config.act_bits)
        # 8-bit weights on the 7-bit grid when the deploying CPU would saturate (see cpu.py); still int8 on disk
        weights[target] = {"kind": kind.value, "bits": 7 if reduce_range and bits == 8 else bits}
        if isinstance(node.args[0], fx.Node):
            wanted.append((node.args[0], node, *act))
    add_act = (config.activation, config.act_bits if config.residual_bits is None else config.residual_bits)
    if config.activation is ActQuantizer.BINARY:  # residual sums keep 8 bits in XNOR nets
        add_act = (DEFAULT_ACT[config.method], 8)
    for node in nodes:
        if is_add(node):
            wanted += [(arg, node, *add_act) for arg in node.all_input_nodes]
    # Outputs of quantised layers and adds (after a trailing ReLU) feeding float ops such as pooling
    # are quantised too, so ONNX Runtime can fuse the producer into an int8 kernel.
    covered = {producer.name for producer, *_ in wanted}
    for node in [*quantised, *(n for n in nodes if is_add(n))]:
        tail = _activation_tail(graph_module, node)
        users = [u for u in tail.users if u.op != "output"]
        if users and len(users) == len(tail.users) and tail.name not in covered:
            wanted += [(tail, user, *add_act) for user in users]
            covered.add(tail.name)
    unknown = [k for k in config.layer_bits if k not in weights]
    if unknown:
        raise ConfigError(f"layer_bits: '{unknown[0]}' is not a quantised layer; layers: {', '.join(weights)}")
    return {
        "per_channel": config.advanced.per_channel,
        "reduce_range": reduce_range,
        "weights": weights,
        "activations": _group([(*_through_identity(graph_module, p, c), k, b) for p, c, k, b in wanted]),
        "float": sorted({n for n in names if matches(n, config.keep_float)}),  # a shared layer is named once
    }


def _activation_tail(graph_module: fx.GraphModule, node: fx.Node) -> fx.Node:
    """The node after `node` and any single-user ReLU-like nodes following it."""
    while len(node.users) == 1:
        user = next(iter(node.users))
        if not is_homogeneous(graph_module, user) or type(module_of(graph_module, user)) in (nn.Identity, nn.Dropout):
            break
        node = user
    return node


def _through_identity(graph_module: fx.GraphModule, producer: fx.Node, consumer: fx.Node) -> tuple[fx.Node, fx.Node]:
    """Quantise the source of an nn.Identity / Dropout chain (a plain residual shortcut), so the
    tensor shared by the block's conv and its shortcut gets one quantiser, not two."""
    while type(module_of(graph_module, producer)) in (nn.Identity, nn.Dropout) and len(producer.users) == 1:
        producer, consumer = producer.all_input_nodes[0], producer
    return producer, consumer


def _group(wanted: list[tuple[fx.Node, fx.Node, ActQuantizer, int]]) -> dict[str, dict[str, Any]]:
    """One quantiser per (tensor, kind, bits); the first on a tensor is named after its node, any
    other after node, kind and bits ('relu__lsq8': fx never makes double underscores)."""
    entries: dict[str, dict[str, Any]] = {}
    by_key: dict[tuple[str, str, int], str] = {}
    for producer, consumer, kind, bits in wanted:
        key = (producer.name, kind.value, bits)
        if key not in by_key:
            first = not any(k[0] == producer.name for k in by_key)
            by_key[key] = producer.name if first else f"{producer.name}__{kind.value}{bits}"
            entries[by_key[key]] = {"kind": kind.value, "bits": bits, "signed": False, "after": producer.name, "consumers": []}
        consumers = entries[by_key[key]]["consumers"]
        if consumer.name not in consumers:
            consumers.append(consumer.name)
    _chain_by_width(entries)
    # Other (float) users read the quantised tensor too: a tensor with a float reader would keep
    # ONNX Runtime from fusing its producer into an int8 kernel (the graph output stays float).
    assigned = {(e["after"], c) for e in entries.values() for c in e["consumers"]}
    for producer, *_ in wanted:
        primary = entries[producer.name]
        for user in producer.users:
            if user.op != "output" and (producer.name, user.name) not in assigned:
                primary["consumers"].append(user.name)
                assigned.add((producer.name, user.name))
    return entries


def _chain_by_width(entries: dict[str, dict[str, Any]]) -> None:
    """Where one tensor has quantisers at several precisions, each narrower one reads the widest
    one's output instead of the tensor (re-quantising an 8-bit code to fewer bits)."""
    by_tensor: dict[str, list[str]] = {}
    for name, entry in entries.items():
        by_tensor.setdefault(entry["after"], []).append(name)
    for names in by_tensor.values():
        widest = max(names, key=lambda n: entries[n]["bits"])
        for name in names:
            if name != widest and entries[name]["bits"] < entries[widest]["bits"]:
                entries[name]["source"] = widest


def apply_plan(graph_module: fx.GraphModule, plan: dict[str, Any], *, init: bool = True) -> fx.GraphModule:
    """Swap the layers and insert the activation quantisers of `plan` (in place). With `init`,
    weight quantisers take their scales from the current weights (skip when weights come later)."""
    for target, spec in plan["weights"].items():
        try:
            layer = graph_module.get_submodule(target)
        except AttributeError:
            raise ModelError(f"quantize plan names layer '{target}', which the model does not have") from None
        quant = build_weight_quant(spec["kind"], spec["bits"], layer.weight.shape[0], plan["per_channel"])
        set_module(graph_module, target, QUANT_OF[type(layer)].from_float(layer, quant, init=init))
    graph_module.add_module(ACT_MODULE, nn.ModuleDict())
    by_name = {n.name: n for n in graph_module.graph.nodes}
    inserted: dict[str, fx.Node] = {}
    # a quantiser reading another one's output (`source`) is inserted after it
    for name, spec in sorted(plan["activations"].items(), key=lambda item: "source" in item[1]):
        missing = [n for n in (spec["after"], *spec["consumers"]) if n not in by_name]
        if missing:
            raise ModelError(f"quantize plan refers to graph node '{missing[0]}', which the traced model lacks")
        if spec.get("source") is not None and spec["source"] not in inserted:
            raise ModelError(f"quantize plan: activation quantiser '{name}' reads '{spec['source']}', which the plan lacks")
        getattr(graph_module, ACT_MODULE)[name] = build_act_quant(spec["kind"], spec["bits"], spec["signed"])
        producer = by_name[spec["after"]]
        source = inserted[spec["source"]] if spec.get("source") is not None else producer
        with graph_module.graph.inserting_after(source):
            inserted[name] = graph_module.graph.call_module(f"{ACT_MODULE}.{name}", (source,))
        for consumer in spec["consumers"]:
            by_name[consumer].replace_input_with(producer, inserted[name])
    _link_inputs(graph_module)
    return finish(graph_module)


def _link_inputs(graph_module: fx.GraphModule) -> None:
    for node in graph_module.graph.nodes:
        layer = module_of(graph_module, node)
        if isinstance(layer, QUANT_LAYERS) and node.args:
            source = module_of(graph_module, node.args[0]) if isinstance(node.args[0], fx.Node) else None
            layer.link_input(source if isinstance(source, ActQuant) else None)


def act_quantizers(model: nn.Module) -> dict[str, nn.Module]:
    container = getattr(model, ACT_MODULE, None)
    return dict(container.items()) if isinstance(container, nn.ModuleDict) else {}


def record_signs(model: nn.Module, plan: dict[str, Any]) -> dict[str, Any]:
    """The plan with each activation quantiser's calibrated signedness filled in."""
    for name, quantizer in act_quantizers(model).items():
        plan["activations"][name]["signed"] = bool(quantizer.signed)
    return plan
