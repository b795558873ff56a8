"""Top-1 / top-5 accuracy and mean cross-entropy on a dataset split, for PyTorch models and for
deployed ONNX graphs. Batches come from the data layer's BatchLoader, normalised with the dataset's
mean/std exactly as the training engine does."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.errors import ConfigError, DataError, ModelError
from deepshrink.export import as_session, onnx_spec, run_onnx
from deepshrink.export.common import check_batch, eval_mode, model_name

SPLITS = ("test", "val", "train")


def evaluate(
    model: nn.Module,
    data: Any,
    *,
    split: str = "test",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    limit_batches: int | None = None,
) -> dict[str, float]:
    """`{"top1", "top5", "loss", "n"}` (accuracies in percent) of `model` on `data` (a DataBundle
    or a data spec string such as "digits") without changing the caller's model."""
    bundle = resolve_data(data)
    target = _on_device(model, torch.device(device))
    with eval_mode(target), torch.inference_mode():
        return _score(target, bundle, split, batch_size, limit_batches, device, model_name(model))


def evaluate_onnx(
    session_or_path: Any,
    data: Any,
    *,
    split: str = "test",
    batch_size: int = 256,
    limit_batches: int | None = None,
    threads: int | None = None,
) -> dict[str, float]:
    """`evaluate` for a deployed ONNX graph, run with ONNX Runtime on CPU."""
    bundle = resolve_data(data)
    session = as_session(session_or_path, threads)
    spec = onnx_spec(session) or {}
    name = spec.get("arch") or (str(session_or_path) if session is not session_or_path else "ONNX model")

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(run_onnx(session, x))

    return _score(forward, bundle, split, batch_size, limit_batches, "cpu", name)


def resolve_data(data: Any) -> Any:
    """A DataBundle as is, or the one a data spec string names."""
    if isinstance(data, str):
        from deepshrink.data import load_data  # loading datasets is only needed for spec strings

        return load_data(data)
    if not all(hasattr(data, attr) for attr in ("test", "num_classes", "mean", "std")):
        kind = type(data).__name__
        raise ConfigError(f"data must be a DataBundle or a data spec string such as 'digits', got {kind}")
    return data


def _score(
    forward: Callable[[torch.Tensor], torch.Tensor],
    bundle: Any,
    split: str,
    batch_size: int,
    limit_batches: int | None,
    device: str | torch.device,
    name: str,
) -> dict[str, float]:
    from deepshrink.data import BatchLoader

    check_batch(batch_size, "batch_size")
    images = _split(bundle, split)
    loader = BatchLoader(
        images, batch_size, train=False, mean=bundle.mean, std=bundle.std, limit_batches=limit_batches, device=device
    )
    top1 = top5 = 0
    loss = 0.0
    n = 0
    for x, labels in loader:
        logits = forward(x).float()
        _check_logits(logits, bundle, name)
        ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = ranked == labels.unsqueeze(1)
        top1 += int(hits[:, 0].sum())
        top5 += int(hits.any(dim=1).sum())
        loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        n += labels.numel()
    if n == 0:
        raise DataError(f"nothing to evaluate: split '{split}' of dataset '{_name(bundle)}' gave no batches")
    return {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "loss": loss / n, "n": n}


def _split(bundle: Any, split: str) -> Any:
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    images = getattr(bundle, split, None)
    if images is None or len(images) == 0:
        raise DataError(f"split '{split}' of dataset '{_name(bundle)}' is empty")
    return images


def _check_logits(logits: torch.Tensor, bundle: Any, name: str) -> None:
    if logits.dim() != 2:
        shape = tuple(logits.shape)
        raise ModelError(f"{name} returns output of shape {shape}; evaluation needs logits [batch, classes]")
    if logits.shape[1] != bundle.num_classes:
        raise ModelError(
            f"{name} outputs {logits.shape[1]} classes but dataset '{_name(bundle)}' has {bundle.num_classes}"
        )


def _on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """The model itself when it already lives on `device`, else a moved copy."""
    current = next((p.device for p in model.parameters()), device)
    if current.type == device.type and (device.index is None or current.index == device.index):
        return model
    return copy.deepcopy(model).to(device)


def _name(bundle: Any) -> str:
    return getattr(bundle, "name", "") or "data"
