"""Why a ResNet-56 with half its MACs is not twice as fast in ONNX Runtime: per-convolution kernel
times of the unpruned model and of the architecture every `pruning_resnet56` row has (each block's
inner channels halved), from ONNX Runtime's own profiler (`deepshrink.metrics.ort_profile`).

Latency does not depend on the weight values, so both models are fresh zoo models (the pruned one
pruned by FPGM at ratio 0.5 inside the blocks, as the benchmark does). Each block has a `conv1`
whose *outputs* were halved (16->8, 32->16, 64->32 in stages 1-3) and a `conv2` whose *inputs*
were. The table in the notes gives, per stage and role, the summed batch-64 kernel times and
their ratio; `conv_ms_b64` in each row has every layer.

    python benchmarks/pruning_latency_layers.py --threads 1     # about 2 minutes

Writes docs/benchmarks/pruning_latency_layers.{json,md,png}."""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

from _common import ROOT, add_io_args, interleaved_latency, machine_name, write_results
from deepshrink.export import export_onnx
from deepshrink.metrics import profile
from deepshrink.metrics.benchmark import row_from_profile
from deepshrink.metrics.ort_profile import op_totals, ort_node_times
from deepshrink.models import create_model
from deepshrink.pruning import prune

NAME = "pruning_latency_layers"
SIZE = (3, 32, 32)
# ORT names a fused conv after the tensor it writes: ".../layerS.B/Relu_output_0_nchwc" is conv1 + ReLU,
# ".../layerS.B/conv2/Conv_output_0_nchwc" is conv2 (its add and ReLU run as separate nodes).
LAYER = re.compile(r"/layer(?P<stage>\d)/layer\d\.(?P<block>\d+)/(?P<what>conv2/Conv|Relu)_output")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1: node times add up)")
    p.add_argument("--runs", type=int, default=20, help="profiled runs per model, in 5 alternating rounds (default 20)")
    add_io_args(p)
    args = p.parse_args(argv)
    args.quick = False
    return args


def conv_times(graphs: dict[str, Path], threads: int, runs: int, rounds: int = 5) -> dict[str, tuple[dict, dict]]:
    """Per model: (ms per block convolution, ms per operator type), each the median over `rounds`
    profiles taken in turns, so a load change on the shared machine hits both models alike."""
    per_round: dict[str, list[list]] = {name: [] for name in graphs}
    for _ in range(rounds):
        for name, path in graphs.items():
            per_round[name].append(ort_node_times(path, 64, SIZE, threads=threads, runs=max(runs // rounds, 1)))
    result = {}
    for name, profiles in per_round.items():
        convs: dict[str, list[float]] = defaultdict(list)
        ops: dict[str, list[float]] = defaultdict(list)
        for times in profiles:
            for op, ms in op_totals(times).items():
                ops[op].append(ms)
            for node in times:
                match = LAYER.search(node.name)
                if node.op == "Conv" and match:
                    role = "conv2" if match["what"].startswith("conv2") else "conv1"
                    convs[f"layer{match['stage']}.{match['block']}.{role}"].append(node.ms)
        result[name] = ({k: round(statistics.median(v), 4) for k, v in convs.items()},
                        {k: round(statistics.median(v), 4) for k, v in ops.items()})
    return result


def summary(base: dict[str, float], pruned: dict[str, float]) -> tuple[str, list[tuple[str, float]]]:
    """A Markdown table per stage and role, and (layer, speed-up) pairs for the plot."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for layer, ms in base.items():
        stage, _, role = layer.split(".")
        sums[(stage, role)][0] += ms
        sums[(stage, role)][1] += pruned[layer]
    channels = {"layer1": 16, "layer2": 32, "layer3": 64}
    lines = ["| stage | conv | pruned side | unpruned ms | pruned ms | speed-up |", "|---|---|---|---:|---:|---:|"]
    for (stage, role), (b, p) in sorted(sums.items()):
        c = channels[stage]
        side = f"outputs {c}->{c // 2}" if role == "conv1" else f"inputs {c}->{c // 2}"
        lines.append(f"| {stage} | {role} | {side} | {b:.2f} | {p:.2f} | {b / p:.2f}x |")
    return "\n".join(lines), [(layer, base[layer] / pruned[layer]) for layer in base]


def plot(pairs: list[tuple[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 3.5))
    colors = ["tab:orange" if name.endswith("conv1") else "tab:blue" for name, _ in pairs]
    ax.bar(range(len(pairs)), [s for _, s in pairs], color=colors)
    ax.axhline(2.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(pairs)), [n.replace("layer", "s") for n, _ in pairs], rotation=90, fontsize=6)
    ax.set_ylabel("speed-up (batch 64)")
    ax.set_title("ResNet-56, inner channels halved: ONNX Runtime speed-up per convolution\n"
                 "orange: outputs pruned, blue: inputs pruned; dashed: the MACs ratio", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    baseline = create_model("resnet56").eval()
    pruned = prune(baseline, criterion="fpgm", ratio=0.5, aggregate="group", protect_ends=True).model.eval()
    out = Path(args.out) if args.out else ROOT / "docs" / "benchmarks"
    rows, layers = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {name: export_onnx(model, Path(tmp) / f"{name}.onnx", SIZE)
                  for name, model in (("baseline", baseline), ("fpgm-0.5-intra", pruned))}
        timed = interleaved_latency(graphs, SIZE, args.threads)
        profiled = conv_times(graphs, args.threads, args.runs)
        for name, model in (("baseline", baseline), ("fpgm-0.5-intra", pruned)):
            layers[name], ops = profiled[name]
            row = row_from_profile(name, profile(model, SIZE, runtimes=()), **timed[name])
            rows.append(row | {"timed_on": machine_name(), "op_ms_b64": ops, "conv_ms_b64": layers[name]})
    table, pairs = summary(layers["baseline"], layers["fpgm-0.5-intra"])
    out.mkdir(parents=True, exist_ok=True)
    plot(pairs, out / f"{NAME}.png")
    notes = ("Summed ONNX Runtime kernel times at batch 64 (profiler: median of runs, models profiled in alternating rounds), per stage and convolution "
             "role:\n\n" + table + f"\n\n![per-convolution speed-up]({NAME}.png)")
    write_results(NAME, rows, args, argv, budget={"threads": args.threads, "profiled_runs": args.runs, "batch": 64},
                  notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
