"""A small forward-hook manager: capture features by module path (torchdistill's pattern).

`FeatureHooks(model, ["layer1", "layer3", "linear:input"])` registers one hook per path; after a
forward pass `pop()` returns `{path: tensor}` and clears it. `name` captures the module's output,
`name:input` its first positional input (e.g. the pooled embedding entering the classifier)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from deepshrink.errors import ConfigError, close_matches
from deepshrink.distillation.taps import INPUT_SUFFIX


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel, so paths never carry `module.`."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """`model.get_submodule(path)` with an error that lists the closest module names."""
    names = [name for name, _ in model.named_modules() if name]
    if path in names:
        return model.get_submodule(path)
    hint = close_matches(path, names, n=5)
    if not hint:
        top = [name for name, _ in model.named_children()]
        hint = f"; top-level modules: {', '.join(top)}"
    raise ConfigError(f"feature path '{path}' is not a module of {type(model).__name__}{hint}")


def split_tap(tap: str) -> tuple[str, bool]:
    """'layer1' -> ('layer1', False); 'linear:input' -> ('linear', True)."""
    if tap.endswith(INPUT_SUFFIX):
        return tap[: -len(INPUT_SUFFIX)], True
    if ":" in tap:
        raise ConfigError(f"feature path '{tap}': the only suffix is '{INPUT_SUFFIX}' (capture the module's input)")
    return tap, False


class FeatureHooks:
    """Forward hooks on a fixed list of module paths. Use as a context manager or call `remove()`."""

    def __init__(self, model: nn.Module, taps: Sequence[str]) -> None:
        self.model = unwrap(model)
        self.taps = list(dict.fromkeys(taps))  # one hook per path even if two losses share it
        self._captured: dict[str, torch.Tensor] = {}
        self._handles = []
        targets = [(tap, *split_tap(tap)) for tap in self.taps]
        modules = [(tap, resolve_module(self.model, name), is_input) for tap, name, is_input in targets]
        for tap, module, is_input in modules:  # resolve everything first: no half-registered state
            self._handles.append(module.register_forward_hook(self._hook(tap, is_input)))

    def _hook(self, tap: str, is_input: bool):
        def hook(_module, inputs, output):
            value = inputs[0] if is_input else output
            if not isinstance(value, torch.Tensor):
                raise ConfigError(f"feature path '{tap}' produced {type(value).__name__}, not a tensor")
            self._captured[tap] = value

        return hook

    def pop(self) -> dict[str, torch.Tensor]:
        """Features of the last forward pass; raises if a tap's module did not run."""
        missing = [tap for tap in self.taps if tap not in self._captured]
        if missing:
            self._captured.clear()
            raise ConfigError(
                f"feature path '{missing[0]}' did not run in the forward pass of {type(self.model).__name__}"
            )
        captured, self._captured = self._captured, {}
        return captured

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._captured.clear()

    def __enter__(self) -> "FeatureHooks":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
