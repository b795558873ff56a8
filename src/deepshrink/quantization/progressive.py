"""Progressive quantisation (Zhuang et al. 2018, "Towards effective low-bitwidth CNNs"): QAT at a
low bit-width starts from the weights a higher bit-width QAT trained, not from the float ones, so
each step down the ladder (8 -> 4 -> 2) begins from weights already shaped by a quantised forward
pass. The float model stays the distillation teacher (with advanced.distill_weight > 0). One call
runs the ladder:

    w2 = quantize(fp32, data, config={"method": "qat", "bits": 2, "progressive": [4]})

which is, spelled out,

    w4 = quantize(fp32, data, method="qat", bits=4)
    w2 = quantize(latent_float_model(w4.model, fp32), data, method="qat", bits=2, teacher=fp32)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch.nn as nn

from deepshrink.errors import ModelError
from deepshrink.quantization.api import QuantizeResult, quantize_once
from deepshrink.quantization.config import QuantizeConfig
from deepshrink.quantization.folding import fold_bn
from deepshrink.quantization.qat import claim_train_dir

# Per stage in the report: its settings, how close its logits came to the float model's, its QAT curve.
STAGE_REPORT_KEYS = ("bits", "act_bits", "weight", "logits_sqnr_db", "calibration_top1_agreement", "qat_history")


def quantize_progressively(model: nn.Module, data: Any, config: QuantizeConfig, *, train_dir: str | os.PathLike | None,
                           resume: bool, teacher: nn.Module | None, **final: Any) -> QuantizeResult:
    """Run `config.progressive`'s stages, then the final quantisation (`final`: its export options),
    each from the previous model's latent weights; `teacher` (default: `model`) is what they distil from.
    Stage N checkpoints in `train_dir`/stageN-wB, so a killed ladder resumes in the stage it was in."""
    if train_dir is not None:  # another ladder than the checkpoints' is refused before any stage trains
        claim_train_dir(train_dir, config, resume)
    teacher = model if teacher is None else teacher
    start, stages = model, []
    for index, stage in enumerate(config.progressive, 1):
        stage_dir = None if train_dir is None else Path(train_dir) / f"stage{index}-w{stage.bits}"
        result = quantize_once(start, data, config.stage(stage), train_dir=stage_dir, resume=resume, teacher=teacher)
        stages.append({k: result.report[k] for k in STAGE_REPORT_KEYS if k in result.report})
        start = latent_float_model(result.model, model)
    result = quantize_once(start, data, config, train_dir=train_dir, resume=resume, teacher=teacher, **final)
    result.report["progressive"] = stages
    return result


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
