"""torch.fx tracing for the dependency graph, with errors that name the construct at fault.

Leaf modules are the layers whose channel semantics we know (convolution, linear, norms,
activations, pooling...) plus any other `torch.nn` built-in, so an unknown built-in is reported as
an unsupported op instead of being traced into. User modules (blocks, shortcuts) are traced
through, so their functional ops are checked one by one."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp

from deepshrink.errors import ModelError


class _Tracer(fx.Tracer):
    def __init__(self, leaf_types: tuple[type, ...]) -> None:
        super().__init__()
        self.leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, self.leaf_types):
            return True
        return super().is_leaf_module(m, qualname)


def _user_frame(exc: BaseException) -> str:
    """file:line and source of the innermost frame outside torch, i.e. the model's own code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/torch/" not in f.filename.replace("\\", "/")]
    if not frames:
        return ""
    frame = frames[-1]
    return f" at {frame.filename}:{frame.lineno} `{(frame.line or '').strip()}`"


def trace(model: nn.Module, leaf_types: tuple[type, ...]) -> fx.GraphModule:
    """Symbolically trace `model`; an untraceable construct raises ModelError naming it."""
    tracer = _Tracer(leaf_types)
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, RuntimeError... for dynamic code
        kind = "data-dependent control flow or an untraceable construct"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"cannot trace {type(model).__name__} with torch.fx ({kind}){_user_frame(exc)}: {message}"
        ) from None
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate without touching BN statistics, restoring every submodule's own mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.train(mode)


def propagate_shapes(gm: fx.GraphModule, inputs: Sequence[torch.Tensor]) -> None:
    """Record every node's output shape (node.meta['tensor_meta']) by running the graph once."""
    with eval_mode(gm), torch.no_grad():
        try:
            ShapeProp(gm).propagate(*inputs)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"example inputs do not run through the traced model: {first}") from None


def example_inputs_for(model: nn.Module, example_inputs, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Normalise example inputs to a tuple; without them, use the model spec's input size."""
    if example_inputs is None:
        from deepshrink.models import spec_of

        spec = spec_of(model)
        if spec is None:
            raise ModelError(
                f"{type(model).__name__}: pass example_inputs (the model has no DeepShrink spec with an input size)"
            )
        generator = torch.Generator().manual_seed(0)
        return (torch.randn(batch, *spec.input_size, generator=generator),)
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    inputs = tuple(example_inputs)
    if not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise ModelError("example_inputs must be a tensor or a sequence of tensors")
    return inputs


def device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")
