"""Probe: what int8 buys the detector on this CPU. FCOS-ResNet x0.5 (untrained: latency does not
depend on the weights) at 320x320: FP32, FPGM to 2x fewer MACs, and each quantised W8A8 (the head's
prediction convolutions in float, as the detector benchmark does; with and without untying the
shared head towers), ONNX Runtime batch 1, 1 thread, each graph timed interleaved with the FP32
baseline. From the repository root, on a quiet machine: python benchmarks/probes/detector_int8_latency.py"""
import json
import tempfile
from pathlib import Path

import torch

from deepshrink.detection import export_detector
from deepshrink.metrics.latency import paired_latency_ms
from deepshrink.models import create_model
from deepshrink.pruning import prune
from deepshrink.quantization import quantize

torch.set_num_threads(1)
torch.manual_seed(0)
size = (3, 320, 320)
head = ["head.cls_pred", "head.box_pred", "head.ctr_pred"]
base = create_model("fcos_resnet", num_classes=5, width_mult=0.5).eval()
pruned = prune(base, torch.randn(2, 3, 160, 160),
               config={"criterion": "fpgm", "protect_ends": False, "budget": {"metric": "macs", "keep": 0.5}}).model
calibration = torch.randn(32, *size)
tmp = Path(tempfile.mkdtemp(prefix="detector_int8_"))


def int8(model, name: str, untie: bool = True) -> Path:
    config = {"observer": "percentile", "keep_float": head, "advanced": {"untie_shared": untie}}
    return quantize(model, calibration, config=config, onnx_path=tmp / f"{name}.onnx", input_size=size).onnx_path


paths = {"baseline": export_detector(base, tmp / "baseline.onnx", size), "pruned": export_detector(pruned, tmp / "pruned.onnx", size),
         "pruned+int8": int8(pruned, "pruned_int8"), "int8": int8(base, "int8"),
         "int8-shared-head": int8(base, "int8_shared", untie=False),
         "pruned+int8-shared-head": int8(pruned, "pruned_int8_shared", untie=False)}
out = {}
for name, path in paths.items():
    pair = paired_latency_ms({"baseline": paths["baseline"], "this": path}, 1, size, threads=1, budget_s=5.0)
    out[name] = {"ms": round(pair["this"], 2), "baseline_ms": round(pair["baseline"], 2),
                 "speedup": round(pair["baseline"] / pair["this"], 3), "bytes": path.stat().st_size}
print(json.dumps(out, indent=1))
