"""Probe: which residual branches depth pruning drops from the FPGM-halved ResNet-56 (the start of
the pruning benchmark's fpgm-depth rows), ranked by energy lost, by energy within the first stage,
and by energy lost per millisecond ONNX Runtime saves (batch 64, 1 thread: run on a quiet machine).
From the repository root: python benchmarks/probes/depth_rank.py"""
import json
import time

import torch

from deepshrink.data import load_data, sample_loader
from deepshrink.models import create_model, load_weights
from deepshrink.pruning import PruneConfig, drop_branches, prune

torch.set_num_threads(1)
data = load_data("imagefolder:../shared/datasets/cifar10-jpeg.tar.gz")
model = create_model("resnet56")
load_weights(model, "../shared/weights/cifar10-jpeg/resnet56.pth")
model.eval()
calibration = list(sample_loader(data, 64, seed=0, limit_batches=4))
thin = prune(model, config=PruneConfig(criterion="fpgm", aggregate="group", ratio=0.5, protect_ends=True), data=calibration).model
start = time.time()
by_latency = drop_branches(thin, count=2, data=calibration, rank_by="latency")
out = {"latency": by_latency.report["dropped"],
       "energy": drop_branches(thin, count=2, data=calibration).report["dropped"],
       "energy_within_layer1": drop_branches(thin, count=2, data=calibration, within=r"^layer1\.").report["dropped"],
       "saved_ms_b64": {k: round(v, 2) for k, v in by_latency.report["saved_ms"].items()},
       "lost_energy": {k: round(v, 4) for k, v in by_latency.report["lost_energy"].items()},
       "seconds": round(time.time() - start)}
print(json.dumps(out, indent=1))
