"""torch.fx helpers shared by folding, equalisation and quantiser placement."""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterator

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.errors import UnsupportedOpError
from deepshrink.models.spec import attach_spec, spec_of

# Ops that add two tensors (residual connections).
ADD_OPS = (operator.add, operator.iadd, torch.add)
# Element-wise ops that commute with a positive per-channel scale (for equalisation).
HOMOGENEOUS_MODULES = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Dropout)
HOMOGENEOUS_FUNCTIONS = (F.relu, torch.relu, F.leaky_relu, F.dropout)
# Layers with weights that we do not know how to quantise: named in the error.
WEIGHTED_FUNCTIONS = (F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.linear, torch.matmul,
                      operator.matmul, torch.bmm, torch.mm)


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace `model` (a copy of a GraphModule is returned as is)."""
    if isinstance(model, fx.GraphModule):
        graph_module = copy.deepcopy(model)
    else:
        try:
            graph_module = fx.symbolic_trace(copy.deepcopy(model))
        except Exception as exc:  # TraceError, TypeError from data-dependent control flow, ...
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UnsupportedOpError(
                f"{type(model).__name__} cannot be traced by torch.fx ({text}); quantisation needs a traceable "
                "forward without data-dependent control flow"
            ) from None
    spec = spec_of(model)
    if spec is not None:
        attach_spec(graph_module, spec)
    return graph_module


def module_of(graph_module: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    if node.op != "call_module":
        return None
    return graph_module.get_submodule(str(node.target))


def set_module(graph_module: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    parent = graph_module.get_submodule(parent_name) if parent_name else graph_module
    setattr(parent, name, module)


def tensor_args(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.all_input_nodes]


def is_add(node: fx.Node) -> bool:
    return node.op in ("call_function", "call_method") and (
        node.target in ADD_OPS or node.target in ("add", "add_", "__add__", "__iadd__")
    ) and len(tensor_args(node)) == 2


def is_homogeneous(graph_module: fx.GraphModule, node: fx.Node) -> bool:
    """True for ReLU-like nodes f with f(s * x) = s * f(x) for s > 0."""
    module = module_of(graph_module, node)
    if module is not None:
        return type(module) in HOMOGENEOUS_MODULES
    if node.op == "call_function":
        return node.target in HOMOGENEOUS_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def weighted_function_nodes(graph_module: fx.GraphModule) -> Iterator[fx.Node]:
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and node.target in WEIGHTED_FUNCTIONS:
            yield node
        elif node.op == "call_method" and node.target in ("matmul", "mm", "bmm"):
            yield node


def finish(graph_module: fx.GraphModule) -> fx.GraphModule:
    graph_module.graph.eliminate_dead_code()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return graph_module
