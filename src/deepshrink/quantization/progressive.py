"""Progressive quantisation (Zhuang et al. 2018, "Towards effective low-bitwidth CNNs"): QAT at a
low bit-width starts from the weights a higher bit-width QAT trained, not from the float ones, so
each step down the ladder (8 -> 4 -> 2) begins from weights already shaped by a quantised forward
pass. The float model stays the distillation teacher (`quantize(..., teacher=original)`).

    w4 = quantize(fp32, data, method="qat", bits=4)
    w2 = quantize(latent_float_model(w4.model, fp32), data, method="qat", bits=2, teacher=fp32)"""

from __future__ import annotations

import torch.nn as nn

from deepshrink.errors import ModelError
from deepshrink.quantization.folding import fold_bn


def latent_float_model(quantized: nn.Module, original: nn.Module) -> nn.Module:
    """A new float model: `original` with its BatchNorms folded (as `quantize` folds them),
    carrying the latent weights and biases the fake-quant `quantized` model was trained to. The
    quantisers' own parameters (step sizes, clipping levels) are dropped: the next `quantize`
    calibrates its grids afresh."""
    base = fold_bn(original)
    wanted, trained = base.state_dict(), quantized.state_dict()
    missing = [k for k in wanted if k not in trained]
    if missing:
        raise ModelError(f"the quantised model has no tensor {missing[0]!r} of the folded float model "
                         f"({len(missing)} missing): was it quantised from this model?")
    reshaped = [k for k, v in wanted.items() if trained[k].shape != v.shape]
    if reshaped:
        k = reshaped[0]
        raise ModelError(f"tensor {k!r} is {tuple(trained[k].shape)} in the quantised model but "
                         f"{tuple(wanted[k].shape)} in the folded float model: was it quantised from this model?")
    base.load_state_dict({k: trained[k].detach().clone() for k in wanted})
    return base.eval()
