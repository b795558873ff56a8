"""Export to ncnn (the mobile runtime of seed 001 §4.2) through pnnx, verified against PyTorch.

The model is copied and rewritten into layers ncnn has (ncnn_rewrite), traced with TorchScript and
converted by the pnnx executable in a temporary directory inside `out_dir`; the ncnn net is loaded
and compared with the PyTorch model in eval mode, and only then are `model.ncnn.param`,
`model.ncnn.bin` and `model.ncnn.json` moved into place, so a failure leaves no half-written result.
Weights are stored and run in FP32, so the deployed numbers are the ones verified."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from deepshrink.errors import ExportError
from deepshrink.export.common import eval_mode, first_line, model_name, resolve_input_size
from deepshrink.export.ncnn_rewrite import ncnn_friendly
from deepshrink.export.ncnn_runtime import (
    ncnn_forward,
    ncnn_latency_ms,
    ncnn_net,
    require_ncnn,
    run_ncnn,
    unsupported_layers,
)
from deepshrink.fileio import write_json
from deepshrink.models.spec import spec_of

__all__ = ["NcnnResult", "export_ncnn", "ncnn_latency_ms", "run_ncnn"]

STEM = "model.ncnn"
RTOL = 1e-3  # allowed max abs difference, relative to the logit scale max(1, max |reference|)
RANDOM_IMAGES = 4
CONVERT_TIMEOUT_S = 900


@dataclass(frozen=True)
class NcnnResult:
    param_path: Path
    bin_path: Path
    bytes: int  # .param + .bin
    max_abs_diff: float | None  # ncnn vs PyTorch over every compared image; None when check=False
    top1: float | None = None  # ncnn top-1 (percent) on labelled `data` batches
    images: int = 0  # images compared


def export_ncnn(
    model: nn.Module,
    out_dir: str | os.PathLike,
    input_size: Sequence[int] | None = None,
    *,
    check: bool = True,
    data: Iterable[Any] | None = None,
) -> NcnnResult:
    """Write `model` (a rewritten copy, in eval mode) to `out_dir/model.ncnn.{param,bin}` plus a
    `model.ncnn.json` with blob names, input size and the model spec.

    With `check` (the default) the ncnn net runs on random images and on every batch of `data`
    (tensors or (images, labels) pairs, normalised as the model expects, e.g. a BatchLoader) and an
    ExportError is raised when it differs from PyTorch by more than 1e-3 times the logit scale;
    labelled batches also give ncnn's top-1."""
    name = model_name(model)
    size = resolve_input_size(model, input_size)
    pnnx, _ = require_ncnn("pnnx", "ncnn")
    friendly = ncnn_friendly(model, size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".ncnn-") as tmp:
        param, bin = _convert(friendly, Path(tmp), size, name, pnnx.EXEC_PATH)
        net = ncnn_net(param, bin)  # loads, so even check=False proves the files are usable
        max_diff, top1, images = _verify(model, net, size, data) if check else (None, None, 0)
        meta = write_json(Path(tmp) / f"{STEM}.json", _metadata(model, net, size))
        for source in (bin, meta, param):  # same file system, so each move is atomic; the .param last
            os.replace(source, out_dir / source.name)
    param, bin = out_dir / param.name, out_dir / bin.name
    return NcnnResult(param, bin, param.stat().st_size + bin.stat().st_size, max_diff, top1, images)


def _metadata(model: nn.Module, net: Any, size: tuple[int, ...]) -> dict[str, Any]:
    """Blob names and input size, plus the spec (arch, classes, normalisation) when the model has one."""
    meta: dict[str, Any] = {"input": net.input_names()[0], "output": net.output_names()[0], "input_size": list(size)}
    spec = spec_of(model)
    if spec is not None:
        meta["spec"] = json.loads(spec.model_dump_json())
    return meta


def _convert(model: nn.Module, tmp: Path, size: tuple[int, ...], name: str, executable: str) -> tuple[Path, Path]:
    """TorchScript-trace `model` and run pnnx on it in `tmp`; returns the ncnn (.param, .bin)."""
    example = torch.randn(1, *size, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # verification catches a bad trace
            torch.jit.trace(model, example, check_trace=False).save(str(tmp / "model.pt"))
    except Exception as exc:
        raise ExportError(f"cannot trace {name} for pnnx: {first_line(exc)}") from None
    param, bin = tmp / f"{STEM}.param", tmp / f"{STEM}.bin"
    shape = ",".join(str(d) for d in (1, *size))
    command = [executable, "model.pt", f"inputshape=[{shape}]f32", "device=cpu", "fp16=0",
               f"ncnnparam={param.name}", f"ncnnbin={bin.name}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    try:
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"pnnx failed to convert {name}: {first_line(exc)}") from None
    log = done.stdout + done.stderr
    if done.returncode != 0 or not param.is_file() or not bin.is_file():
        tail = " | ".join(log.strip().splitlines()[-3:]) or f"exit status {done.returncode}"
        raise ExportError(f"pnnx failed to convert {name} to ncnn: {tail}")
    unknown = unsupported_layers(param)
    if unknown:
        listed = ", ".join(f"'{layer}' ({kind})" for kind, layer in unknown)
        notes = sorted({line.strip() for line in log.splitlines() if "not supported" in line})
        said = f"; pnnx says: {'; '.join(notes)}" if notes else ""
        raise ExportError(f"pnnx could not lower every op of {name} to ncnn layers: {listed}{said}")
    return param, bin


def _verify(
    model: nn.Module, net: Any, size: tuple[int, ...], data: Iterable[Any] | None
) -> tuple[float, float | None, int]:
    """Compare ncnn with PyTorch on random images and the `data` batches: (max abs diff, top-1, images)."""
    random_images = torch.randn(RANDOM_IMAGES, *size, generator=torch.Generator().manual_seed(0))
    batches: Iterable[tuple[str, Any]] = [("random images", random_images)]
    if data is not None:
        batches = itertools.chain(batches, ((f"data batch {i}", batch) for i, batch in enumerate(data)))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    output, name = net.output_names()[0], model_name(model)
    max_diff, correct, labelled, images = 0.0, 0, 0, 0
    with eval_mode(model), torch.inference_mode():
        for where, batch in batches:
            x, labels = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
            reference = model(x.to(device)).float().cpu()
            got = ncnn_forward(net, x)
            max_diff = max(max_diff, _compare(got, reference, f"ncnn output '{output}' of {name}", where))
            images += x.shape[0]
            if labels is not None and reference.dim() == 2:
                correct += int((got.reshape(reference.shape).argmax(dim=1) == labels.cpu()).sum())
                labelled += labels.numel()
    return max_diff, (100.0 * correct / labelled if labelled else None), images


def _compare(got: torch.Tensor, reference: torch.Tensor, what: str, where: str) -> float:
    """Max abs difference, or an ExportError naming the output, input and element when it exceeds
    RTOL x the logit scale max(1, max |reference|) or is not finite."""
    if got.numel() != reference.numel():
        raise ExportError(f"{what} has shape {tuple(got.shape)}, PyTorch gives "
                          f"{tuple(reference.shape)} ({where})")
    diff = (got.reshape(reference.shape) - reference).abs()
    worst = float(diff.max())
    scale = max(1.0, float(reference.abs().max()))
    if not worst <= RTOL * scale:  # also catches NaN
        flat = int(diff.nan_to_num(float("inf")).argmax())
        sample, *element = [int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape)]
        raise ExportError(
            f"{what} differs from PyTorch on {where}: max abs diff {worst:.3g} at image "
            f"{sample}, element {element} (allowed {RTOL:g} x logit scale {scale:.3g})"
        )
    return worst
