"""Export to ONNX with the TorchScript exporter (`dynamo=False`): fast for CNNs and needs no
onnxscript. The one place in DeepShrink that calls `torch.onnx.export`."""

from __future__ import annotations

import copy
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
import torch.nn as nn

from deepshrink.errors import ConfigError, ExportError
from deepshrink.export.onnx_rewrite import channel_constant_adds_as_convs
from deepshrink.export.common import check_batch, first_line, model_name, resolve_input_size
from deepshrink.fileio import atomic_write_bytes
from deepshrink.models.spec import spec_of

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
SPEC_METADATA_KEY = "deepshrink.spec"  # ModelSpec JSON, stored in the graph's metadata_props


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: Sequence[int] | None = None,
    *,
    opset: int = 17,
    dynamic_batch: bool = True,
    batch_size: int = 1,
) -> Path:
    """Write `model` (in eval mode, on a copy) to `path` as a checked ONNX graph with input
    "input" [batch, *input_size] and output "logits"; the batch axis is dynamic by default."""
    name = model_name(model)
    size = resolve_input_size(model, input_size)
    check_batch(batch_size, "batch_size")
    if not isinstance(opset, int) or isinstance(opset, bool) or opset < 7:
        raise ConfigError(f"opset must be an integer >= 7, got {opset!r}")
    try:
        exported = copy.deepcopy(model).eval()
    except Exception as exc:
        raise ExportError(f"cannot export {name}: the model cannot be copied ({first_line(exc)})") from None
    example = torch.randn(batch_size, *size, device=_device_of(exported))
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated upstream; we choose it on purpose (DEVELOPERS.md).
            warnings.simplefilter("ignore", DeprecationWarning)
            # Strided slices (e.g. option-A shortcuts) are left unfolded: harmless and not actionable.
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
            torch.onnx.export(
                exported,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                do_constant_folding=True,
            )
    except Exception as exc:  # UnsupportedOperatorError, SymbolicValueError, RuntimeError, TypeError...
        raise ExportError(f"cannot export {name} to ONNX opset {opset}: {first_line(exc)}") from None
    proto = onnx.load_model_from_string(buffer.getvalue())
    channel_constant_adds_as_convs(proto)  # keeps ONNX Runtime's blocked layout through depth-pruned blocks
    spec = spec_of(model)
    if spec is not None:  # keep arch, classes and normalisation with the deployed graph
        onnx.helper.set_model_props(proto, {SPEC_METADATA_KEY: spec.model_dump_json()})
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ExportError(f"ONNX graph exported from {name} fails onnx.checker: {first_line(exc)}") from None
    return atomic_write_bytes(path, proto.SerializeToString())


def _device_of(model: nn.Module) -> torch.device:
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")
