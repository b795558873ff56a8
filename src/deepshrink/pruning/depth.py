"""Depth pruning: remove whole residual branches. A residual network behaves like an ensemble of
paths of different lengths (Veit et al. 2016), so one block's branch can go with little loss, and
unlike thinning it removes every op of the block: on CPUs whose kernels run narrow convolutions
slowly (MLAS at 8 channels) that is where channel pruning stops paying.

A branch is one operand of a residual sum whose exclusive nodes (those feeding this sum and not
the other operand) hold parameters, while the other operand's do not (an identity or a
zero-padding shortcut). Dropping it replaces its output by a learnable per-channel constant, the
branch's mean output on calibration data (channels on dim 1), so the sum keeps its mean:
`out = shortcut + c`. Branches are scored by the share of the sum's energy that replacement loses,
E||F(x) - c||^2 / E||out||^2, the lowest first; or (rank_by="latency") by that loss per millisecond
ONNX Runtime saves without the branch (each timed), so the blocks the runtime runs slowly go first. The
surgery is verified: the new model must equal the original run with each dropped branch's output
replaced by its constant."""

from __future__ import annotations

import copy
import operator
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from deepshrink.errors import ConfigError, ModelError, VerificationError
from deepshrink.models.spec import TRANSFORMS, derive
from deepshrink.pruning.config import RankBy
from deepshrink.pruning.trace import eval_mode, example_inputs_for, trace
from deepshrink.pruning.verify import flat_tensors, relative_error

_ADDS = {operator.add, operator.iadd, torch.add}


@dataclass(frozen=True)
class Branch:
    name: str  # the common prefix of its modules, e.g. "layer1.8"
    add: str  # the residual sum's node
    output: str  # the operand of the sum it computes
    nodes: frozenset[str]  # every node that only this branch computes


@dataclass
class DepthResult:
    """`model`: the new model (a GraphModule); `plan`: what was dropped, replayable as the
    "drop_branches" transform; `report`: every candidate's score and the verification error."""

    model: nn.Module
    plan: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)


def _is_add(node: fx.Node) -> bool:
    if node.op == "call_function" and node.target in _ADDS:
        return True
    return node.op == "call_method" and node.target in ("add", "add_", "__add__")


def _ancestors(node: fx.Node, memo: dict[fx.Node, frozenset[fx.Node]]) -> frozenset[fx.Node]:
    """`node` and every node it depends on."""
    stack = [node]
    while stack:  # iterative post-order: deep networks exceed Python's recursion limit
        current = stack.pop()
        if current in memo:
            continue
        missing = [n for n in current.all_input_nodes if n not in memo]
        if missing:
            stack.append(current)
            stack.extend(missing)
            continue
        memo[current] = frozenset({current}).union(*(memo[n] for n in current.all_input_nodes))
    return memo[node]


def _has_parameters(gm: fx.GraphModule, nodes: Iterable[fx.Node]) -> bool:
    return any(n.op == "call_module" and next(gm.get_submodule(n.target).parameters(), None) is not None
               for n in nodes)


def _prefix(nodes: Iterable[fx.Node], fallback: str) -> str:
    """The module path all of the branch's layers share, e.g. "layer1.5"."""
    targets = [n.target.split(".") for n in nodes if n.op == "call_module"]
    common: list[str] = []
    for parts in zip(*targets) if targets else ():
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return ".".join(common) or fallback


def find_branches(gm: fx.GraphModule) -> list[Branch]:
    """The droppable residual branches of a traced model, in execution order."""
    memo: dict[fx.Node, frozenset[fx.Node]] = {}
    branches = []
    for node in gm.graph.nodes:
        operands = [a for a in node.args[:2] if isinstance(a, fx.Node)] if _is_add(node) else []
        if len(operands) != 2 or operands[0] is operands[1]:
            continue
        left, right = (_ancestors(a, memo) for a in operands)
        sides = [(operands[0], left - right), (operands[1], right - left)]
        weighted = [(out, nodes) for out, nodes in sides if _has_parameters(gm, nodes)]
        if len(weighted) != 1:
            continue  # no parameters anywhere (not a block) or a projection shortcut: ambiguous
        output, nodes = weighted[0]
        owned = nodes | {node}
        exclusive = all(user in owned for n in nodes for user in n.users) and len(output.users) == 1
        if exclusive and not any(n.op == "placeholder" for n in nodes):
            branches.append(Branch(_prefix(nodes, node.name), node.name, output.name,
                                   frozenset(n.name for n in nodes)))
    names = [b.name for b in branches]
    if len(set(names)) != len(names):  # prefixes collide (e.g. two sums in one block): use the sums' names
        branches = [Branch(b.add, b.add, b.output, b.nodes) for b in branches]
    return branches


class _Capture(fx.Interpreter):
    """Runs the graph, handing chosen nodes' values to `seen`, optionally replacing some by constants."""

    def __init__(self, gm: fx.GraphModule, watch: set[str], replace: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__(gm)
        self.watch, self.replace, self.seen = watch, replace or {}, {}

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        if n.name in self.replace:
            value = self.replace[n.name].to(value).expand_as(value)
        if n.name in self.watch:
            self.seen[n.name] = value
        return value


def score_branches(gm: fx.GraphModule, branches: Sequence[Branch], batches: Iterable[Sequence[torch.Tensor]]
                   ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """({branch: its mean output per channel, shaped to broadcast}, {branch: energy share lost})."""
    watch = {b.output for b in branches} | {b.add for b in branches}
    total: dict[str, torch.Tensor] = {}
    square: dict[str, torch.Tensor] = {}
    energy: dict[str, torch.Tensor] = {}
    count: dict[str, int] = {}
    with eval_mode(gm), torch.no_grad():
        for inputs in batches:
            runner = _Capture(gm, watch)
            runner.run(*inputs)
            for b in branches:
                value = runner.seen[b.output].double()
                dims = [d for d in range(value.dim()) if d != 1]  # every dim but the channels
                total[b.name] = total.get(b.name, 0) + value.sum(dims, keepdim=True)
                square[b.name] = square.get(b.name, 0) + value.pow(2).sum(dims, keepdim=True)
                energy[b.name] = energy.get(b.name, 0) + runner.seen[b.add].double().pow(2).sum()
                count[b.name] = count.get(b.name, 0) + value.numel() // value.shape[1]
    if not count:
        raise ConfigError("depth pruning needs at least one calibration batch to score the branches")
    means = {name: (total[name] / count[name]) for name in count}
    lost = {name: float((square[name] - count[name] * means[name].pow(2)).sum() / energy[name].clamp_min(1e-12))
            for name in count}
    return {name: m.float() for name, m in means.items()}, lost


def branch_savings(gm: fx.GraphModule, branches: Sequence[Branch], constants: dict[str, torch.Tensor],
                   inputs: Sequence[torch.Tensor], batch: int = 64, threads: int = 1) -> dict[str, float]:
    """{branch: milliseconds one ONNX Runtime call on `batch` images saves without it}. Every
    branch is timed, interleaved with the full model: branches of one shape do not cost the same
    (on MLAS, dropping ResNet-56's first block made the halved model slower, the fifth faster)."""
    from deepshrink.export import export_onnx  # the exporter imports metrics: keep pruning light
    from deepshrink.metrics.latency import paired_latency_ms

    size = tuple(inputs[0].shape[1:])
    with tempfile.TemporaryDirectory(prefix="deepshrink-depth-") as tmp:
        graphs = {"": export_onnx(gm, Path(tmp) / "full.onnx", size)}
        for i, branch in enumerate(branches):
            graphs[branch.name] = export_onnx(_surgery(copy.deepcopy(gm), [branch], constants), Path(tmp) / f"{i}.onnx", size)
        ms = paired_latency_ms(graphs, batch, size, threads=threads, budget_s=5.0)
    return {b.name: ms[""] - ms[b.name] for b in branches}


def _rank(lost: dict[str, float], saved: dict[str, float] | None) -> dict[str, tuple[float, float]]:
    """Sort keys: energy lost (per millisecond saved, when timed; no saving, or not timed, ranks last)."""
    if saved is None:
        return {name: (loss, loss) for name, loss in lost.items()}
    return {name: (loss / saved[name] if saved.get(name, 0.0) > 0 else float("inf"), loss)
            for name, loss in lost.items()}


def _cut(gm: fx.GraphModule, branch: Branch, constant: torch.Tensor) -> None:
    """In place: the sum adds `constant` (a new parameter) where the branch's output was."""
    attr = "dropped_" + re.sub(r"\W", "_", branch.name)
    gm.register_parameter(attr, nn.Parameter(constant.detach().clone()))
    nodes = {n.name: n for n in gm.graph.nodes}
    add, output = nodes[branch.add], nodes[branch.output]
    with gm.graph.inserting_before(add):
        add.replace_input_with(output, gm.graph.get_attr(attr))


def _surgery(gm: fx.GraphModule, chosen: Sequence[Branch], constants: dict[str, torch.Tensor]) -> fx.GraphModule:
    for branch in chosen:
        _cut(gm, branch, constants[branch.name])
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _pick(branches: list[Branch], names: Sequence[str] | None, count: int | None, within: str | None,
          rank: dict[str, tuple[float, float]]) -> list[Branch]:
    if (names is None) == (count is None):
        raise ConfigError("drop_branches: pass exactly one of `names` (which branches) and `count` (how many)")
    pool = [b for b in branches if within is None or re.search(within, b.name)]
    if within is not None and not pool:
        raise ConfigError(f"within={within!r} matches no residual branch; the branches are: "
                          f"{', '.join(b.name for b in branches) or 'none'}")
    if names is not None:
        by_name = {b.name: b for b in pool}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(f"no droppable residual branch named {unknown[0]!r}; the branches are: "
                              f"{', '.join(by_name) or 'none'}")
        return [by_name[n] for n in names]
    if not 0 <= count <= len(pool):
        raise ConfigError(f"count must be in [0, {len(pool)}] (the droppable branches"
                          f"{' within ' + repr(within) if within else ''}), got {count}")
    return sorted(pool, key=lambda b: rank[b.name])[:count]


def drop_branches(
    model: nn.Module,
    example_inputs=None,
    *,
    names: Sequence[str] | None = None,
    count: int | None = None,
    within: str | None = None,
    data: Iterable | None = None,
    rank_by: str | RankBy = RankBy.ENERGY,
    latency_batch: int = 64,
    threads: int = 1,
    tolerance: float = 1e-4,
) -> DepthResult:
    """A new model without the residual branches `names`, or without the `count` lowest-ranked
    ones (`within`: a regex their names must match, e.g. "layer1" for the first stage). `data`:
    calibration batches (tensors or (images, labels) pairs) for the constants and scores; without
    it the example inputs stand in. `rank_by="latency"` ranks by energy lost per millisecond saved
    on ONNX Runtime at `latency_batch` images and `threads` threads (every candidate timed against
    the full model, interleaved; the report's "saved_ms"). The original is left untouched."""
    try:
        rank_by = RankBy(rank_by)
    except ValueError:
        raise ConfigError(f"rank_by must be one of: {', '.join(r.value for r in RankBy)}; got {rank_by!r}") from None
    inputs = example_inputs_for(model, example_inputs)
    gm = trace(copy.deepcopy(model), ())
    branches = find_branches(gm)
    if not branches:
        raise ModelError(f"{type(model).__name__} has no residual branch to drop (a sum whose one operand has "
                         "weighted layers of its own and the other none)")
    batches = [inputs] if data is None else [(b[0],) if isinstance(b, (list, tuple)) else (b,) for b in data]
    constants, lost = score_branches(gm, branches, batches)
    saved = None
    if rank_by is RankBy.LATENCY and count is not None:  # only the candidates are timed
        pool = [b for b in branches if within is None or re.search(within, b.name)]
        saved = branch_savings(gm, pool, constants, inputs, latency_batch, threads)
    chosen = _pick(branches, names, count, within, _rank(lost, saved))
    new = _surgery(gm, chosen, constants)
    error = _verify(model, new, chosen, constants, inputs, tolerance)
    plan = {"branches": [{"name": b.name, "shape": list(constants[b.name].shape)} for b in chosen]}
    report = {"dropped": [b.name for b in chosen], "lost_energy": lost, "verified_rel_error": error,
              "rank_by": rank_by.value, **({"saved_ms": saved, "latency_batch": latency_batch} if saved else {})}
    return DepthResult(derive(model, new, "drop_branches", plan), plan, report)


def _verify(original: nn.Module, new: nn.Module, chosen: Sequence[Branch], constants: dict[str, torch.Tensor],
            inputs: Sequence[torch.Tensor], tolerance: float) -> float:
    """The original graph, every op run, with each dropped branch's output replaced by its constant."""
    reference = trace(copy.deepcopy(original), ())
    replace = {b.output: constants[b.name] for b in chosen}
    with eval_mode(reference), eval_mode(new), torch.no_grad():
        expected = _Capture(reference, set(), replace).run(*inputs)
        actual = new(*inputs)
    error = max(relative_error(a, e) for a, e in zip(flat_tensors(actual), flat_tensors(expected)))
    if error > tolerance:
        raise VerificationError(f"dropping branches {', '.join(b.name for b in chosen)} changed the output by "
                                f"{error:.3g} (relative) against the original with their outputs replaced "
                                f"(tolerance {tolerance:g})")
    return error


@TRANSFORMS.register("drop_branches")
def _replay_drop(model: nn.Module, plan: dict) -> nn.Module:
    """The same surgery on a freshly built model; the constants come from the saved state dict."""
    gm = trace(model, ())
    by_name = {b.name: b for b in find_branches(gm)}
    missing = [b["name"] for b in plan["branches"] if b["name"] not in by_name]
    if missing:
        raise ModelError(f"drop_branches replay: the model has no residual branch {missing[0]!r}")
    chosen = [by_name[b["name"]] for b in plan["branches"]]
    return _surgery(gm, chosen, {b["name"]: torch.zeros(b["shape"]) for b in plan["branches"]})
