"""Probe: do low-bit (W4A4, W2A2) ResNet-20 graphs run as int8 kernels in ONNX Runtime, and how
fast are they against FP32? PTQ of an untrained ResNet-20 (latency and graph structure do not
depend on the weights); for each graph: the share of convolutions/GEMMs ONNX Runtime fuses into
int8 kernels, its float Adds left over, and paired latency (batch 64 and 1, 1 thread). Run from
the repository root on a quiet machine (about a minute):

    python benchmarks/probes/lowbit_int8_kernels.py [--out runs/logs/lowbit_int8_kernels.json]
"""
import argparse
import json
import tempfile
from pathlib import Path

import torch

from deepshrink.export import export_onnx
from deepshrink.metrics.latency import paired_latency_ms
from deepshrink.models import create_model
from deepshrink.quantization import quantize
from deepshrink.quantization.int8_export import int8_kernel_share, optimized_op_counts

parser = argparse.ArgumentParser()
parser.add_argument("--out", default=None)
args = parser.parse_args()
torch.set_num_threads(1)
torch.manual_seed(0)
tmp = Path(tempfile.mkdtemp(prefix="lowbit_"))
model = create_model("resnet20").eval()
calibration = torch.randn(64, 3, 32, 32)
paths = {"fp32": export_onnx(model, tmp / "fp32.onnx", (3, 32, 32))}
result = {}
for bits in (8, 4, 2):
    name = f"w{bits}a{bits}"
    paths[name] = quantize(model, calibration, config={"bits": bits}, onnx_path=tmp / f"{name}.onnx").onnx_path
    counts = optimized_op_counts(paths[name], tmp / f"{name}.opt.onnx")
    result[name] = {"int8_kernel_share": round(int8_kernel_share(counts), 3), "float_adds": counts["Add"],
                    "qlinear_conv": counts["QLinearConv"], "qlinear_add": counts["QLinearAdd"]}
for batch, budget in ((64, 25.0), (1, 5.0)):
    times = paired_latency_ms(paths, batch, (3, 32, 32), threads=1, budget_s=budget)
    for name, ms in times.items():
        result.setdefault(name, {})[f"ort_b{batch}_ms"] = round(ms, 3)
        result[name][f"speedup_b{batch}"] = round(times["fp32"] / ms, 3)
text = json.dumps(result, indent=1)
print(text)
if args.out:
    Path(args.out).write_text(text + "\n")
