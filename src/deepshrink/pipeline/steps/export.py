"""The `export` step: the deployable files of the run in OUT/final — the model (safetensors +
plan), ONNX FP32 of the last float model, ONNX int8 from the latest quantize step, and ncnn
(`final/ncnn/`, via pnnx, the optional `ncnn` extra) of the last float model."""

from __future__ import annotations

import shutil
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from deepshrink.errors import ConfigError, ExportError
from deepshrink.pipeline.context import RunContext
from deepshrink.pipeline.steps.base import Step, StepOutput, register_step

if TYPE_CHECKING:
    from deepshrink.pipeline.recipe import Recipe

NCNN_EVAL_BATCH = 256


class Format(str, Enum):
    onnx = "onnx"
    onnx_int8 = "onnx_int8"
    ncnn = "ncnn"


class ExportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    formats: list[Format] = Field(default_factory=lambda: [Format.onnx, Format.onnx_int8], min_length=1)
    opset: int = Field(17, ge=13, le=21)


def _latest(ctx: RunContext, step_dir: Path, kind: str) -> Path | None:
    """The newest earlier step directory of `kind` in this run."""
    earlier = sorted(p for p in (ctx.out_dir / "steps").glob(f"*-{kind}") if p.name < step_dir.name)
    return earlier[-1] if earlier else None


def _float_model(ctx: RunContext, step_dir: Path, model: nn.Module) -> nn.Module:
    """The model as it was before the latest quantize step (what FP32 ONNX should hold)."""
    from deepshrink.models import load

    quant_dir = _latest(ctx, step_dir, "quantize")
    if quant_dir is None:
        return model
    before = sorted(p for p in (ctx.out_dir / "steps").iterdir() if p.name < quant_dir.name)
    return load(before[-1] / "model") if before else ctx.baseline


@register_step("export")
class ExportStep(Step):
    Options = ExportOptions
    measures = False

    def check(self, options: ExportOptions, recipe: "Recipe", *, source: str, base_dir: Path | None) -> None:
        if Format.ncnn in options.formats:
            from deepshrink.export.ncnn_runtime import require_ncnn

            try:
                require_ncnn("pnnx", "ncnn")
            except ExportError as exc:
                raise ConfigError(f"formats: 'ncnn': {exc}") from None

    def run(self, options: ExportOptions, ctx: RunContext, model: nn.Module, step_dir: Path) -> StepOutput:
        from deepshrink.export import check_onnx_matches, export_onnx
        from deepshrink.metrics import file_bytes
        from deepshrink.models import save_model

        final = ctx.out_dir / "final"
        save_model(model, final / "model")
        deploy: dict[str, dict] = {"model": {"dir": str(final / "model")}}
        needs_float = Format.onnx in options.formats or Format.ncnn in options.formats
        float_model = _float_model(ctx, step_dir, model) if needs_float else None
        if Format.onnx in options.formats:
            path = export_onnx(float_model, final / "model.fp32.onnx", opset=options.opset)
            error = check_onnx_matches(float_model, path)
            deploy["onnx_fp32"] = {"path": str(path), "bytes": file_bytes(path), "max_abs_error_vs_torch": error}
        quant_dir = _latest(ctx, step_dir, "quantize")
        if Format.onnx_int8 in options.formats and quant_dir is not None:
            path = final / "model.int8.onnx"
            shutil.copyfile(quant_dir / "model.int8.onnx", path)
            deploy["onnx_int8"] = {"path": str(path), "bytes": file_bytes(path)}
        if Format.ncnn in options.formats:
            deploy["ncnn"] = _ncnn(ctx, float_model, final / "ncnn")
        return StepOutput(model, extra={"deploy": deploy})


def _ncnn(ctx: RunContext, model: nn.Module, out_dir: Path) -> dict:
    """Export to ncnn, verified on random images and the test batches (a subset in --smoke), which
    also give ncnn's top-1; batch-1 latency with PyTorch's thread count, as the ORT numbers."""
    from deepshrink.data import BatchLoader
    from deepshrink.export import export_ncnn, ncnn_latency_ms
    from deepshrink.export.common import resolve_input_size

    data = ctx.data
    batches = BatchLoader(data.test, NCNN_EVAL_BATCH, train=False, mean=data.mean, std=data.std,
                          limit_batches=ctx.limit_batches)
    result = export_ncnn(model, out_dir, data=batches)
    timing = ncnn_latency_ms(result.param_path, result.bin_path, resolve_input_size(model, None))
    return {"param": str(result.param_path), "bin": str(result.bin_path), "bytes": result.bytes,
            "max_abs_error_vs_torch": result.max_abs_diff, "top1": result.top1,
            "images_checked": result.images, "latency_ms_b1": round(timing.median, 4), "threads": timing.threads}
