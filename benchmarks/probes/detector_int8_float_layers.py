"""Probe: which layers the detector's int8 row should leave in float. The `pruned+kd` row of
`benchmarks/detector_highway.py` (reused from `--work`: run the benchmark first with the same
flags) quantised W8A8 with the three prediction convolutions in float (the benchmark's choice),
with only the class prediction in float, and with every layer int8 — each with and without the
latency-aware fallback — scored on the Highway test split as deployed on ONNX Runtime and timed at
batch 1 interleaved with the FP32 baseline graph (1 thread):

    python benchmarks/probes/detector_int8_float_layers.py --finetune-epochs 32 --round-to 16 --work runs/detector_e32_r16

Prints one line per variant (and writes them as JSON to --out when given). With --latency-only it
skips the mAP evaluation: run it so on a quiet machine, since batch-1 ratios of a 2-4 ms graph move
by 10 % when another job shares the CPU."""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import detector_highway as bench_module  # noqa: E402

from deepshrink.detection import evaluate_onnx_detector, export_detector  # noqa: E402
from deepshrink.metrics.latency import paired_latency_ms  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", default="32")
parser.add_argument("--finetune-epochs", default="32")
parser.add_argument("--round-to", default="16")
parser.add_argument("--kd-feature-weight", default="0")
parser.add_argument("--work", required=True)
parser.add_argument("--out", default=None)
parser.add_argument("--quick", action="store_true", help="the benchmark's smoke run (its --quick work folder)")
parser.add_argument("--latency-only", action="store_true", help="skip the mAP evaluation (minutes): time the graphs only")
cli = parser.parse_args()
torch.set_num_threads(1)
VARIANTS = {"heads-float": bench_module.HEAD_PREDICTIONS, "cls-float": ["head.cls_pred"], "all-int8": []}
results = []
args = bench_module.parse(["--epochs", cli.epochs, "--finetune-epochs", cli.finetune_epochs, "--round-to", cli.round_to,
                           "--kd-feature-weight", cli.kd_feature_weight, "--threads", "1", "--work", cli.work]
                          + ["--quick"] * cli.quick)
bench = bench_module.Bench(args)  # the trained rows are loaded once; only the fallback switch changes
base = bench_module.create_model(args.model, num_classes=bench.data.num_classes, width_mult=args.width_mult)
base = bench.fit("baseline", bench_module.train_detector, base, config=bench.train_config(args.epochs, args.lr)).eval()
pruned = bench.pruned_row(base, args.finetune_epochs)[0]
kd = bench.kd_row(pruned.model, base, args.finetune_epochs).eval()
baseline_onnx = export_detector(base, bench.tmp / "baseline.onnx", bench.size)
for fallback in (False, True):
    args.latency_fallback = fallback
    for name, keep in VARIANTS.items():
        q = bench.int8(kd, keep, name=name)
        pair = paired_latency_ms({"baseline": baseline_onnx, "int8": q.onnx_path}, 1, bench.size, threads=1, budget_s=5.0)
        row = {"variant": name, "latency_fallback": fallback, "float_layers": q.report["float_layers"],
               "ort_map50": None if cli.latency_only else round(evaluate_onnx_detector(q.onnx_path, bench.data, split="test",
                                                                                        threads=1).map50, 3),
               "int8_ms": round(pair["int8"], 4), "baseline_ms": round(pair["baseline"], 4),
               "speedup_ort_b1": round(pair["baseline"] / pair["int8"], 3)}
        results.append(row)
        print(json.dumps(row), flush=True)
if cli.out:
    Path(cli.out).write_text(json.dumps(results, indent=1) + "\n")
