"""The model directory every deepshrink command writes: `model.safetensors` (the state dict) and
`model.json` (the ModelSpec: architecture + replayable transforms). `load` rebuilds the exact model
from a fresh zoo model, so nothing is ever unpickled."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from deepshrink.errors import CheckpointError
from deepshrink.fileio import load_safetensors, read_json, safe_torch_load, save_safetensors, write_json
from deepshrink.models.spec import ModelSpec, attach_spec, replay, require_spec

WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "model.json"


def save_model(model: nn.Module, directory: str | os.PathLike) -> Path:
    directory = Path(directory)
    spec = require_spec(model)
    save_safetensors(model.state_dict(), directory / WEIGHTS_FILE)
    write_json(directory / SPEC_FILE, spec.model_dump(mode="json"))
    return directory


def is_model_dir(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / SPEC_FILE).is_file()


def load(path: str | os.PathLike) -> nn.Module:
    """Load a model directory written by any deepshrink command."""
    from deepshrink.models.registry import create_model

    path = Path(path)
    if not is_model_dir(path):
        raise CheckpointError(f"{path}: not a deepshrink model directory (expected {SPEC_FILE} and {WEIGHTS_FILE})")
    try:
        spec = ModelSpec.model_validate(read_json(path / SPEC_FILE))
    except ValueError as exc:
        raise CheckpointError(f"{path / SPEC_FILE}: invalid model spec ({exc})") from None
    model = create_model(
        spec.arch, num_classes=spec.num_classes, input_size=spec.input_size, mean=spec.mean, std=spec.std, **spec.kwargs
    )
    model = replay(model, spec.transforms)
    attach_spec(model, spec)
    load_state_dict_checked(model, load_safetensors(path / WEIGHTS_FILE), source=str(path / WEIGHTS_FILE))
    return model


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Weights from a safetensors file, a torch checkpoint (plain state dict, or a dict holding
    `state_dict`/`model`), with DataParallel's `module.` prefix removed."""
    path = Path(path)
    if path.suffix == ".safetensors":
        state = load_safetensors(path)
    else:
        state = safe_torch_load(path)
        if isinstance(state, dict):
            for key in ("state_dict", "model", "model_state_dict"):
                if key in state and isinstance(state[key], dict):
                    state = state[key]
                    break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: does not contain a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state_dict_checked(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> nn.Module:
    """load_state_dict that names the first missing, unexpected or mis-shaped tensor."""
    own = model.state_dict()
    # BatchNorm's counter is bookkeeping; old checkpoints often lack it.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing:
        raise CheckpointError(f"{source}: missing tensor '{missing[0]}' ({len(missing)} missing in all)")
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensor '{unexpected[0]}' ({len(unexpected)} unexpected in all)")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{source}: tensor '{key}' has shape {tuple(tensor.shape)}, model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)
    return model


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    return load_state_dict_checked(model, read_state_dict(path), source=str(path))
