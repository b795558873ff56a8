"""Batch-norm folding: conv/linear -> BN becomes one layer with W' = W * g / sqrt(v + eps) and
b' = (b - m) * g / sqrt(v + eps) + beta, exactly the eval-mode function. Recorded as transform
"fold_bn" (the replay re-does the same graph surgery, so saved folded models reload)."""

from __future__ import annotations

from collections import Counter

import torch
import torch.fx as fx
import torch.nn as nn

from deepshrink.errors import ModelError
from deepshrink.models.spec import TRANSFORMS, derive
from deepshrink.quantization.graph import finish, module_of, set_module, trace

FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@torch.no_grad()
def fold_bn_into(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A new layer (with bias) computing bn(layer(x)) in eval mode."""
    scale = bn.weight.detach() if bn.affine else torch.ones_like(bn.running_mean)
    shift = bn.bias.detach() if bn.affine else torch.zeros_like(bn.running_mean)
    factor = scale / torch.sqrt(bn.running_var + bn.eps)
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(bn.running_mean)
    folded = _with_bias(layer)
    folded.weight.copy_(layer.weight.detach() * factor.reshape(-1, *([1] * (layer.weight.dim() - 1))))
    folded.bias.copy_((bias - bn.running_mean) * factor + shift)
    return folded


def _with_bias(layer: nn.Module) -> nn.Module:
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, layer.out_features, bias=True)
    else:
        new = type(layer)(
            layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride, padding=layer.padding,
            dilation=layer.dilation, groups=layer.groups, bias=True, padding_mode=layer.padding_mode,
        )
    return new.to(layer.weight.device, layer.weight.dtype).train(layer.training)


def fold_pairs(graph_module: fx.GraphModule) -> list[tuple[fx.Node, fx.Node]]:
    """(layer node, BN node) pairs where the BN is the layer's only consumer. A layer called from
    several places (a detection head shared across pyramid levels, each level with its own BN) is
    left alone: folding would bake one level's statistics into the weights every level reads."""
    calls = Counter(str(node.target) for node in graph_module.graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph_module.graph.nodes:
        bn = module_of(graph_module, node)
        if type(bn) not in NORMS or not bn.track_running_stats or len(node.all_input_nodes) != 1:
            continue
        producer = node.all_input_nodes[0]
        layer = module_of(graph_module, producer)
        if (type(layer) in FOLDABLE and len(producer.users) == 1 and layer.weight.shape[0] == bn.num_features
                and calls[str(producer.target)] == 1 and calls[str(node.target)] == 1):
            pairs.append((producer, node))
    return pairs


def fold_bn_graph(model: nn.Module) -> tuple[fx.GraphModule, list[str]]:
    """Trace `model` and fold every foldable BN; returns the graph module and the folded layers."""
    graph_module = trace(model)
    folded = []
    for layer_node, bn_node in fold_pairs(graph_module):
        target = str(layer_node.target)
        layer, bn = graph_module.get_submodule(target), graph_module.get_submodule(str(bn_node.target))
        set_module(graph_module, target, fold_bn_into(layer, bn))
        bn_node.replace_all_uses_with(layer_node)
        graph_module.graph.erase_node(bn_node)
        folded.append(target)
    return finish(graph_module), folded


def fold_bn(model: nn.Module) -> nn.Module:
    """A new model with every BatchNorm that follows a conv/linear folded into it (eval function
    unchanged). Other BatchNorms stay."""
    return fold_bn_layers(model)[0]


def fold_bn_layers(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """fold_bn's model and the names of the layers a BatchNorm was folded into."""
    new, folded = fold_bn_graph(model)
    return derive(model, new, "fold_bn", {"layers": folded}), folded


@TRANSFORMS.register("fold_bn")
def _replay_fold_bn(model: nn.Module, plan: dict) -> nn.Module:
    new, folded = fold_bn_graph(model)
    if folded != list(plan.get("layers", folded)):
        raise ModelError(f"fold_bn replay folded {folded}, but the saved plan folded {plan['layers']}")
    return new
