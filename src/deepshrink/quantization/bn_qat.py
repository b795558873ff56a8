"""BatchNorm during quantisation-aware training, folded again before deployment.

The fake-quant model has its BatchNorms folded into the convolutions, which is what deploys; but
fine-tuning a folded low-bit network has nothing renormalising its activations, so it needs tiny
learning rates and still recovers slowly (ResNet-20 W4A4 lost 2.2 points after 100 steps). As in
Krishnamoorthi 2018 (§3.2) and torch.ao's ConvBn modules, each folded layer trains wrapped with a
BatchNorm: the weight that is fake-quantised is always the folded one, W * gamma / sigma_running,
so training sees the deployed grid, while the BatchNorm normalises the convolution's output with
batch statistics. `attach_batchnorm` starts every BatchNorm at the identity of the folded layer
(gamma = sigma, beta = mean + bias, from calibration statistics); `freeze_batchnorm` folds the
running statistics back, leaving plain quantised layers with exactly the wrapper's eval function."""

from __future__ import annotations

import torch
import torch.nn as nn

from deepshrink.quantization.graph import set_module
from deepshrink.quantization.modules import QUANT_LAYERS


class BatchNormQAT(nn.Module):
    """A quantised conv/linear `layer` followed by a trainable BatchNorm over its output channels.
    Eval mode computes the folded layer, fake-quantised exactly as `fold()` will leave it."""

    def __init__(self, layer: nn.Module, mean: torch.Tensor, var: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        norm = nn.BatchNorm1d if isinstance(layer, nn.Linear) or layer.weight.dim() == 3 else nn.BatchNorm2d
        self.bn = norm(layer.weight.shape[0]).to(layer.weight.device)
        with torch.no_grad():
            self.bn.running_mean.copy_(mean)
            self.bn.running_var.copy_(var)
            self.bn.weight.copy_(torch.sqrt(var + self.bn.eps))
            self.bn.bias.copy_(mean + bias)
        layer.bias = None  # now inside the BatchNorm's shift
        self.layer = layer

    def _factor(self) -> torch.Tensor:
        """gamma / sigma_running per output channel: what folding multiplies the weight by."""
        return self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        factor = self._factor()
        weight = self.layer.weight * factor.reshape(-1, *([1] * (self.layer.weight.dim() - 1)))
        return weight, self.bn.bias - self.bn.running_mean * factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._folded()
        if not self.training:
            return self.layer.compute(x, self.layer.weight_quant(weight), self.layer.quantized_bias(bias))
        # Un-scale the folded layer's output and let the BatchNorm normalise it with batch statistics.
        out = self.layer.compute(x, self.layer.weight_quant(weight), None)
        factor = self._factor().reshape(1, -1, *([1] * (out.dim() - 2)))
        return self.bn(out / factor)

    @torch.no_grad()
    def fold(self) -> nn.Module:
        """The plain quantised layer computing this module's eval function."""
        weight, bias = self._folded()
        layer = self.layer
        layer.weight = nn.Parameter(weight.detach().clone())
        layer.bias = nn.Parameter(bias.detach().clone())
        return layer


class ChannelMoments:
    """Per-channel mean and variance of tensors [N, C, ...] accumulated over batches (float64)."""

    def __init__(self) -> None:
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, x: torch.Tensor) -> None:
        z = x.detach().transpose(0, 1).flatten(1).double()
        self.count += z.shape[1]
        self.total = self.total + z.sum(1)
        self.squares = self.squares + (z * z).sum(1)

    def mean_var(self, *, unbiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.total / self.count
        var = (self.squares / self.count - mean * mean).clamp_min(0)
        if unbiased:  # as BatchNorm's running_var is kept
            var = var * self.count / max(self.count - 1, 1)
        return mean.float(), var.float()


@torch.no_grad()
def _moments(model: nn.Module, modules: dict, batches: list[torch.Tensor], observe) -> dict:
    """{key: ChannelMoments of observe(module, input)} for each module of `modules` ({key: module})
    over one pass of `batches` through `model` in its current modes."""
    moments = {key: ChannelMoments() for key in modules}
    handles = [module.register_forward_hook(lambda m, inputs, _out, key=key: moments[key].add(observe(m, inputs[0])))
               for key, module in modules.items()]
    try:
        device = next(model.parameters()).device
        for batch in batches:
            model(batch.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return moments


@torch.no_grad()
def attach_batchnorm(model: nn.Module, layers: list[str], batches: list[torch.Tensor]) -> nn.Module:
    """Wrap each quantised layer named in `layers` (those a BatchNorm was folded into) in a
    BatchNormQAT started from its output statistics on `batches` (in place; returns `model`)."""
    targets = {name: model.get_submodule(name) for name in layers}
    targets = {name: layer for name, layer in targets.items() if isinstance(layer, QUANT_LAYERS)}
    was_training = model.training
    moments = _moments(model.eval(), targets, batches, lambda layer, x: layer.compute(x, layer.quantized_weight(), None))
    for name, layer in targets.items():
        mean, var = moments[name].mean_var(unbiased=False)
        bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(mean)
        set_module(model, name, BatchNormQAT(layer, mean, var, bias))
    return model.train(was_training)


@torch.no_grad()
def reestimate_statistics(model: nn.Module, batches: list[torch.Tensor]) -> nn.Module:
    """In place: each BatchNormQAT's running statistics become the exact average of its batch
    statistics over `batches` (no gradient step). A short fine-tune leaves the exponential
    averages behind the moving weights: on a small task, 2 epochs at lr 0.01 trained to a lower
    loss than without BatchNorm yet scored 50 % in eval mode until re-estimated."""
    wrappers = {index: m for index, m in enumerate(model.modules()) if isinstance(m, BatchNormQAT)}
    was_training = model.training
    model.eval()
    for wrapper in wrappers.values():
        wrapper.train()  # the batch-statistics path; activation quantisers stay in eval mode
    moments = _moments(model, {k: w.bn for k, w in wrappers.items()}, batches, lambda bn, x: x)
    for key, wrapper in wrappers.items():
        mean, var = moments[key].mean_var(unbiased=True)
        wrapper.bn.running_mean.copy_(mean)
        wrapper.bn.running_var.copy_(var)
    return model.train(was_training)


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNormQAT back into its quantised layer (in place; returns `model`)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, BatchNormQAT):
            set_module(model, name, module.fold())
    return model


def has_batchnorm_qat(model: nn.Module) -> bool:
    return any(isinstance(m, BatchNormQAT) for m in model.modules())


__all__ = ["BatchNormQAT", "attach_batchnorm", "freeze_batchnorm", "has_batchnorm_qat", "reestimate_statistics"]
