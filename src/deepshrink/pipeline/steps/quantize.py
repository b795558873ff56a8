"""The `quantize` step: PTQ or QAT fake quantisation, exported as a real int8 QDQ ONNX graph whose
accuracy, bytes and latency are what the report records."""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from deepshrink.pipeline.context import RunContext
from deepshrink.pipeline.steps.base import Step, StepOutput, register_step
from deepshrink.quantization.config import QuantizeConfig

INT8_ONNX = "model.int8.onnx"
SMOKE_CALIBRATION = 64


@register_step("quantize")
class QuantizeStep(Step):
    Options = QuantizeConfig

    def run(self, options: QuantizeConfig, ctx: RunContext, model: nn.Module, step_dir: Path) -> StepOutput:
        from deepshrink.fileio import write_json
        from deepshrink.quantization import quantize

        config = options
        if ctx.smoke:
            config = config.model_copy(update={"calibration_size": min(config.calibration_size, SMOKE_CALIBRATION),
                                               "train": ctx.train_config(config.train)})
        step_dir.mkdir(parents=True, exist_ok=True)
        # QAT checkpoints every epoch, so a killed run resumes inside the step (as train/distill do)
        result = quantize(model, ctx.data, config=config, onnx_path=step_dir / INT8_ONNX,
                          train_dir=step_dir / "train", resume=True)
        summary = {k: v for k, v in result.report.items() if k != "qat_history"}
        write_json(step_dir / "quantize.json", summary)
        # a progressive ladder's stages first: the training plot shows the whole descent in bits
        history = [*(h for stage in result.report.get("progressive", []) for h in stage.get("qat_history", [])),
                   *result.report.get("qat_history", [])]
        return StepOutput(result.model, history=history, onnx_path=result.onnx_path,
                          extra={"quantize": {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}})
