"""Probe: what quantising the inputs of residual sums at low bits costs. W4A4 and W3A3 PTQ (MSE
observer, 512 calibration images) of the ResNet-20 JPEG baseline with residual_bits 8 and None,
scored on 2,000 stratified test images. Run from the repository root (CPU, a few minutes):

    python benchmarks/probes/residual_bits_ptq.py
"""
import dataclasses

import torch

from deepshrink.data import load_data, sample_loader, subset
from deepshrink.metrics import evaluate
from deepshrink.models import create_model, load_weights
from deepshrink.quantization import quantize

torch.set_num_threads(1)
data = load_data("imagefolder:../shared/datasets/cifar10-jpeg.tar.gz")
scored = dataclasses.replace(data, test=subset(data.test, 2000, seed=0))
model = create_model("resnet20")
load_weights(model, "../shared/weights/cifar10-jpeg/resnet20.pth")
model.eval()
calibration = torch.cat([x for _, x in zip(range(8), (b for b, _ in sample_loader(data, 64)))])
print("fp32", evaluate(model, scored, split="test")["top1"])
for bits in (4, 3):
    for residual_bits in (8, None):
        result = quantize(model, calibration, method="ptq", bits=bits, observer="mse", config={"residual_bits": residual_bits})
        print(f"W{bits}A{bits} residual_bits={residual_bits}", evaluate(result.model, scored, split="test")["top1"])
