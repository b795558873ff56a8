"""Batch-norm folding: conv/linear -> BN becomes one layer with W' = W * g / sqrt(v + eps) and
b' = (b - m) * g / sqrt(v + eps) + beta, exactly the eval-mode function. Recorded as transform
"fold_bn" (the replay re-does the same graph surgery, so saved folded models reload).

A layer called from several places, each call followed by its own BN (a detection head shared
across pyramid levels, each level with its own statistics), is first untied: every call after the
first gets its own copy of the layer, so each folds with its own BN. The function is unchanged and
the copies add weights, but every convolution then quantises to an int8 kernel; left shared, the
head's conv -> BN -> ReLU runs in float on ONNX Runtime."""

from __future__ import annotations

import copy
from collections import Counter, defaultdict

import torch
import torch.fx as fx
import torch.nn as nn

from deepshrink.errors import ModelError
from deepshrink.models.spec import TRANSFORMS, attach_spec, derive, spec_of
from deepshrink.quantization.graph import finish, module_of, set_module, trace

FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
UNTIED = "untied_layers"  # the ModuleDict holding the per-call copies of shared layers


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


def _norm_after(graph_module: fx.GraphModule, producer: fx.Node) -> fx.Node | None:
    """The BN node that is `producer`'s only consumer and reads nothing else, if any."""
    if len(producer.users) != 1:
        return None
    node = next(iter(producer.users))
    bn = module_of(graph_module, node)
    if type(bn) in NORMS and bn.track_running_stats and len(node.all_input_nodes) == 1:
        return node
    return None


def fold_pairs(graph_module: fx.GraphModule) -> list[tuple[fx.Node, fx.Node]]:
    """(layer node, BN node) pairs where the BN is the layer's only consumer. A layer still called
    from several places is left alone: folding would bake one call's statistics into the weights
    every call reads."""
    calls = Counter(str(node.target) for node in graph_module.graph.nodes if node.op == "call_module")
    pairs = []
    for producer in graph_module.graph.nodes:
        layer, node = module_of(graph_module, producer), _norm_after(graph_module, producer)
        if (node is not None and type(layer) in FOLDABLE and layer.weight.shape[0] == module_of(graph_module, node).num_features
                and calls[str(producer.target)] == 1 and calls[str(node.target)] == 1):
            pairs.append((producer, node))
    return pairs


def untie_shared_layers(graph_module: fx.GraphModule) -> list[str]:
    """In place: each later call of a conv/linear called from several places, every call followed
    by a BN of its own, reads its own copy of the layer (under `untied_layers`). Returns the copies'
    names."""
    calls: dict[str, list[fx.Node]] = defaultdict(list)
    for node in graph_module.graph.nodes:
        if node.op == "call_module" and type(module_of(graph_module, node)) in FOLDABLE:
            calls[str(node.target)].append(node)
    made = []
    for target, nodes in calls.items():
        norms = [_norm_after(graph_module, node) for node in nodes]
        if len(nodes) < 2 or None in norms or len({str(n.target) for n in norms}) != len(nodes):
            continue
        if not hasattr(graph_module, UNTIED):
            graph_module.add_module(UNTIED, nn.ModuleDict())
        layer = graph_module.get_submodule(target)
        for k, node in enumerate(nodes[1:], 1):
            key = f"{target.replace('.', '_')}__call{k}"
            getattr(graph_module, UNTIED)[key] = copy.deepcopy(layer)
            node.target = f"{UNTIED}.{key}"
            made.append(node.target)
    return made


def fold_bn_graph(model: nn.Module, untie: bool = True) -> tuple[fx.GraphModule, list[str], list[str]]:
    """Trace `model`, untie shared layers (with `untie`) and fold every foldable BN; returns the
    graph module, the folded layers and the untied copies."""
    graph_module = trace(model)
    untied = untie_shared_layers(graph_module) if untie else []
    folded = []
    for layer_node, bn_node in fold_pairs(graph_module):
        target = str(layer_node.target)
        layer, bn = graph_module.get_submodule(target), graph_module.get_submodule(str(bn_node.target))
        set_module(graph_module, target, fold_bn_into(layer, bn))
        bn_node.replace_all_uses_with(layer_node)
        graph_module.graph.erase_node(bn_node)
        folded.append(target)
    return finish(graph_module), folded, untied


def fold_bn(model: nn.Module, untie: bool = True) -> nn.Module:
    """A new model with every BatchNorm that follows a conv/linear folded into it (eval function
    unchanged; shared layers untied first, see the module docstring). Other BatchNorms stay."""
    return fold_bn_layers(model, untie)[0]


def fold_bn_layers(model: nn.Module, untie: bool = True) -> tuple[nn.Module, list[str]]:
    """fold_bn's model and the names of the layers a BatchNorm was folded into."""
    new, folded, untied = fold_bn_graph(model, untie)
    if not folded and not untied:  # nothing to replay (e.g. a progressive ladder's already folded model)
        spec = spec_of(model)
        return (new if spec is None else attach_spec(new, spec)), folded
    return derive(model, new, "fold_bn", {"layers": folded, "untied": untied}), folded


@TRANSFORMS.register("fold_bn")
def _replay_fold_bn(model: nn.Module, plan: dict) -> nn.Module:
    new, folded, _ = fold_bn_graph(model, untie=bool(plan.get("untied")))  # plans from before untying have none
    if folded != list(plan.get("layers", folded)):
        raise ModelError(f"fold_bn replay folded {folded}, but the saved plan folded {plan['layers']}")
    return new
