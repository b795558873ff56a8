"""Probe: a pruned detector row of `benchmarks/detector_highway.py` quantised to int8 straight
after its fine-tuning (no KD stage), scored on the Highway test split as deployed on ONNX
Runtime. It reuses the benchmark's finished baseline and pruned rows from `--work` (run the
benchmark first with the same flags), so it takes minutes:

    python benchmarks/probes/detector_pruned_int8.py --finetune-epochs 32 --round-to 4 --work runs/detector_e32_ft32

Prints the float and int8 test mAP@0.5 of the pruned row and the baseline's (and writes them to
--out when given)."""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import detector_highway as bench_module  # noqa: E402

from deepshrink.detection import evaluate_detector, evaluate_onnx_detector  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", default="32")
parser.add_argument("--finetune-epochs", default="32")
parser.add_argument("--round-to", default="4")
parser.add_argument("--work", required=True)
parser.add_argument("--out", default=None)
cli = parser.parse_args()
torch.set_num_threads(1)
args = bench_module.parse(["--epochs", cli.epochs, "--finetune-epochs", cli.finetune_epochs, "--round-to", cli.round_to,
                           "--threads", "1", "--work", cli.work, "--no-latency-fallback"])
bench = bench_module.Bench(args)
base = bench_module.create_model(args.model, num_classes=bench.data.num_classes, width_mult=args.width_mult)
base = bench.fit("baseline", bench_module.train_detector, base, config=bench.train_config(args.epochs, args.lr)).eval()
tuned = bench.pruned_row(base, args.finetune_epochs)[1].eval()
q = bench.int8(tuned, bench_module.HEAD_PREDICTIONS)
result = {"baseline_test_map50": evaluate_detector(base, bench.data, split="test").map50,
          "pruned_test_map50": evaluate_detector(tuned, bench.data, split="test").map50,
          "pruned_int8_ort_test_map50": evaluate_onnx_detector(q.onnx_path, bench.data, split="test", threads=1).map50}
text = json.dumps(result, indent=1)
print(text)
if cli.out:
    Path(cli.out).write_text(text + "\n")
