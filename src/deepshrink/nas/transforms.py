"""Architecture transforms that swap standard convolutions for lightweight blocks, initialised from
the original weights so that recovery (fine-tuning, distillation) starts close to the original:

- `to_depthwise_separable`: k×k conv → k×k depthwise conv + 1×1 pointwise conv (MobileNet). Their
  composition has weight W'[o, i] = P[o, i]·D[i], so for each *input* channel i the (C_out, k·k)
  slice W[:, i] is replaced by its best rank-1 approximation (truncated SVD, the least-squares
  optimum in weight space): D[i] = √σ₁·v₁, P[:, i] = √σ₁·u₁.
- `to_ghost`: conv → Ghost module (GhostNet): a primary conv with ceil(C_out/ratio) filters (the
  largest-norm original filters, copied) whose outputs feed cheap d×d depthwise convs making the
  other channels. Each remaining original filter goes to the primary whose cheap op reproduces it
  best: the d×d kernel is the least-squares fit of the filter by shifted copies of the primary
  filter (composition of the two convs), and filters are assigned greedily, best fit first,
  ratio - 1 per primary. A fixed gather puts the channels back in the original order.

With `calibration` images the second factor (pointwise weights; cheap kernels) is refitted by
least squares on each layer's real inputs in the original model. On the trained CIFAR ResNet-20
(18 convs replaced, 100 held-out test images) the mean per-layer relative output error is 0.62
with the weight-space fit and 0.41 refitted for separable convs (weight-space error 0.76), and
0.55 / 0.47 for Ghost modules at ratio 2 (weight-space 0.56). These are large: the blocks have 7×
and 2× fewer weights, and the errors compound through the network, so the transformed model needs
recovery training (distillation from the original) before it is useful.

Both return a new model, record their plan with `derive`, and register a replay in TRANSFORMS.
Each plan lists the replaced layers with `relative_error`, the weight-space error of the fit (the
relative output error for white inputs), and `output_error` on the calibration images if given."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.errors import ConfigError, ModelError
from deepshrink.models.spec import TRANSFORMS, derive
from deepshrink.pruning.selection import LayerSelection

SEPARABLE, GHOST = "depthwise_separable", "ghost"
Selector = Iterable[str] | LayerSelection | None


class SeparableConv(nn.Module):
    """Depthwise k×k (the original stride, padding, dilation) then pointwise 1×1 (the original bias)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        c_in = conv.in_channels
        self.depthwise = nn.Conv2d(
            c_in, c_in, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            groups=c_in, bias=False, padding_mode=conv.padding_mode,
        )  # fmt: skip
        self.pointwise = nn.Conv2d(c_in, conv.out_channels, 1, bias=conv.bias is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class GhostConv(nn.Module):
    """Primary conv → cheap depthwise convs (ratio - 1 outputs per primary channel), concatenated,
    then `order` (a buffer, saved with the weights) picks the original channel order."""

    def __init__(self, conv: nn.Conv2d, ratio: int, dw_size: int) -> None:
        super().__init__()
        primary = math.ceil(conv.out_channels / ratio)
        bias = conv.bias is not None
        self.primary = nn.Conv2d(
            conv.in_channels, primary, conv.kernel_size, conv.stride, conv.padding,
            bias=bias, padding_mode=conv.padding_mode,
        )  # fmt: skip
        self.cheap = nn.Conv2d(primary, primary * (ratio - 1), dw_size, 1, dw_size // 2, groups=primary, bias=bias)
        self.register_buffer("order", torch.arange(conv.out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.primary(x)
        return torch.cat([p, self.cheap(p)], dim=1).index_select(1, self.order)


# --- fits (pure tensor maths) ---------------------------------------------------------------------


def fit_separable(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(C_out, C_in, kh, kw) -> depthwise (C_in, 1, kh, kw), pointwise (C_out, C_in, 1, 1), and
    the relative Frobenius error of the rank-1-per-input-channel approximation."""
    c_out, c_in, kh, kw = weight.shape
    slices = weight.double().permute(1, 0, 2, 3).reshape(c_in, c_out, kh * kw)
    u, s, vh = torch.linalg.svd(slices, full_matrices=False)
    root = s[:, :1].sqrt()  # split σ₁ evenly so neither factor carries the whole scale
    depthwise = (root * vh[:, 0]).reshape(c_in, 1, kh, kw)
    pointwise = (u[:, :, 0] * root).T.reshape(c_out, c_in, 1, 1)
    error = (s[:, 1:].square().sum() / s.square().sum().clamp_min(1e-300)).sqrt().item()
    return depthwise.to(weight.dtype), pointwise.to(weight.dtype), error


def _shifted(primary: torch.Tensor, stride: tuple[int, int], dw_size: int) -> torch.Tensor:
    """(m, C_in, kh, kw) -> (m, d·d, C_in·Sh·Sw): each primary filter placed at the d·d offsets, in
    input pixels, at which the cheap d×d conv reads it; canvas S = k + stride·(d - 1)."""
    extra_h, extra_w = stride[0] * (dw_size - 1), stride[1] * (dw_size - 1)
    copies = []
    for ty in range(dw_size):
        for tx in range(dw_size):
            top, left = stride[0] * ty, stride[1] * tx
            copies.append(F.pad(primary, (left, extra_w - left, top, extra_h - top)))
    return torch.stack(copies, 1).flatten(2)


def fit_ghost(
    weight: torch.Tensor, ratio: int, dw_size: int, stride: tuple[int, int] = (1, 1)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Fit a Ghost module to a conv weight (C_out, C_in, kh, kw). Returns the indices of the primary
    filters (m,), the cheap kernels (m·(ratio-1), 1, d, d), `order` (C_out,) into the concatenated
    [primary, cheap] outputs, `source` (m·(ratio-1),) the original filter each cheap channel fits
    (-1: unused), and the relative Frobenius error of the composed weights."""
    c_out = weight.shape[0]
    w = weight.detach().double().cpu()  # a small problem per layer: solved on the CPU in float64
    m, ghosts = math.ceil(c_out / ratio), ratio - 1
    norms = w.flatten(1).norm(dim=1)
    primary = norms.argsort(descending=True)[:m].sort().values
    chosen = set(primary.tolist())
    rest = torch.tensor([o for o in range(c_out) if o not in chosen], dtype=torch.long)
    design = _shifted(w[primary], stride, dw_size)  # (m, d², X)
    half = (dw_size - 1) // 2
    pad_h, pad_w = stride[0] * half, stride[1] * half
    target = F.pad(w[rest], (pad_w, pad_w, pad_h, pad_h)).flatten(1)  # the filter centred on the canvas
    gram = design @ design.transpose(1, 2)  # (m, d², d²)
    scale = gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-30)
    gram += 1e-10 * scale[:, None, None] * torch.eye(dw_size**2, dtype=w.dtype)  # all-zero filters stay solvable
    rhs = design @ target.T  # (m, d², R)
    kernels = torch.linalg.solve(gram, rhs)  # (m, d², R): least-squares cheap kernel per (primary, filter)
    explained = (kernels * rhs).sum(1)  # (m, R): squared norm of each fit
    energy = target.square().sum(1).clamp_min(1e-300)
    cheap = torch.zeros(m * ghosts, dw_size * dw_size, dtype=w.dtype)
    source = torch.full((m * ghosts,), -1, dtype=torch.long)
    order = torch.empty(c_out, dtype=torch.long)
    order[primary] = torch.arange(m)
    taken, pairs = [0] * m, {}
    for flat in (explained / energy).flatten().argsort(descending=True).tolist():  # best fits first
        j, r = divmod(flat, len(rest))
        if r in pairs or taken[j] == ghosts:
            continue
        slot = j * ghosts + taken[j]
        taken[j] += 1
        pairs[r] = j
        cheap[slot], source[slot], order[rest[r]] = kernels[j, :, r], rest[r], m + slot
        if len(pairs) == len(rest):
            break
    rs, js = torch.tensor(list(pairs)), torch.tensor(list(pairs.values()))
    # The residual itself, not energy - explained: that difference cancels to ~1e-11 on exact fits.
    fitted = torch.einsum("pt,ptx->px", kernels[js, :, rs], design[js])
    error = ((target[rs] - fitted).square().sum() / w.square().sum().clamp_min(1e-300)).sqrt().item()
    return primary, cheap.reshape(-1, 1, dw_size, dw_size).to(weight.dtype), order, source, error


# --- layer selection ------------------------------------------------------------------------------


def separable_reason(conv: nn.Module) -> str | None:
    """Why a module cannot become depthwise-separable, or None when it can."""
    if not isinstance(conv, nn.Conv2d):
        return f"is a {type(conv).__name__}, not a Conv2d"
    if conv.groups != 1:
        return f"is a grouped convolution (groups={conv.groups})"
    if max(conv.kernel_size) == 1:
        return "is a 1×1 convolution (nothing to separate)"
    return None


def ghost_reason(conv: nn.Module) -> str | None:
    """Why a module cannot become a Ghost module, or None when it can."""
    if not isinstance(conv, nn.Conv2d):
        return f"is a {type(conv).__name__}, not a Conv2d"
    if conv.groups != 1:
        return f"is a grouped convolution (groups={conv.groups})"
    if conv.dilation != (1, 1):
        return f"is dilated (dilation={conv.dilation}); the cheap-op fit assumes dense kernels"
    if conv.out_channels < 2:
        return "has a single output channel"
    return None


def _resolve(model: nn.Module, selector: Selector, field: str) -> tuple[set[str], set[str]]:
    """(selected paths, the paths named exactly): a pattern or name matching nothing is an error."""
    if isinstance(selector, str):  # a lone name, not its characters
        selector = [selector]
    if not isinstance(selector, LayerSelection):
        selector = LayerSelection(names=tuple(selector))
    return selector.resolve(model, what=field), set(selector.names)


def _under(name: str, roots: Iterable[str]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def select_layers(
    model: nn.Module, include: Selector, exclude: Selector, reason: Callable[[nn.Module], str | None], what: str
) -> list[str]:
    """Eligible convolutions at or under the included paths, minus those at or under excluded ones.
    include=None means every eligible conv; exclude=None then keeps the first convolution (it sees
    the raw pixels, and with 1-3 input channels has little to save). A layer named exactly in
    `include` that holds no eligible conv is an error; regex and type matches skip such layers."""
    modules = dict(model.named_modules())
    eligible = [n for n, m in modules.items() if n and reason(m) is None]
    if include is None:
        chosen = eligible
        if exclude is None:
            first = next((n for n, m in modules.items() if isinstance(m, nn.Conv2d)), None)
            exclude = [first] if first else []
    else:
        roots, named = _resolve(model, include, f"{what} include")
        for root in sorted(named):
            if not any(_under(n, [root]) for n in eligible):
                why = reason(modules[root]) or "contains no eligible convolution"
                raise ConfigError(f"{what} include: layer '{root}' {why}")
        chosen = [n for n in eligible if _under(n, roots)]
    dropped = _resolve(model, exclude, f"{what} exclude")[0] if exclude else set()
    chosen = [n for n in chosen if not _under(n, dropped)]
    if not eligible:
        raise ConfigError(f"{what}: the model has no convolution this transform can replace")
    if not chosen:
        listed = ", ".join(eligible[:3]) + (", ..." if len(eligible) > 3 else "")
        raise ConfigError(
            f"{what}: no convolution left to replace after include/exclude ({len(eligible)} eligible: {listed})"
        )
    return chosen


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _replaceable(model: nn.Module, name: str, reason: Callable[[nn.Module], str | None], kind: str) -> nn.Conv2d:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ModelError(f"replaying '{kind}': the model has no layer '{name}'") from None
    why = reason(module)
    if why is not None:
        raise ModelError(f"replaying '{kind}': layer '{name}' {why}")
    return module


# --- optional refit on calibration images (least squares on the layer's real inputs) ----------------


def layer_inputs(model: nn.Module, names: list[str], images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each named layer sees when the (original, eval-mode) model runs on `images`."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        model.get_submodule(n).register_forward_pre_hook(lambda _m, a, n=n: captured.__setitem__(n, a[0].detach()))
        for n in names
    ]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return captured


def _rows(t: torch.Tensor, limit: int) -> torch.Tensor:
    """(N, C, H, W) -> (rows, C) float64, at most `limit` pixels taken evenly (every step-th)."""
    flat = t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])
    return flat[:: max(1, flat.shape[0] // limit)].double()


def _ridge(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """argmin_x |a x - b|² (batched), with a tiny ridge so dead channels (all-zero columns) are fine."""
    gram = a.mT @ a
    scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + 1e-8 * scale[..., None, None] * eye, a.mT @ b)


def _with_ones(a: torch.Tensor, bias: bool) -> torch.Tensor:
    return torch.cat([a, torch.ones_like(a[..., :1])], -1) if bias else a


def refit_pointwise(conv: nn.Conv2d, block: SeparableConv, inputs: torch.Tensor) -> float:
    """Least-squares pointwise weights (and bias) for the fitted depthwise on real inputs; returns
    the relative output error of the block on them."""
    bias = conv.bias is not None
    with torch.no_grad():
        target = _rows(conv(inputs), 16384)
        feats = _with_ones(_rows(block.depthwise(inputs), 16384), bias)
        solution = _ridge(feats, target)  # (C_in [+1], C_out)
        block.pointwise.weight.copy_(solution[: conv.in_channels].T.reshape_as(block.pointwise.weight))
        if bias:
            block.pointwise.bias.copy_(solution[-1])
    return ((feats @ solution - target).norm() / target.norm().clamp_min(1e-300)).item()


def refit_cheap(
    conv: nn.Conv2d, block: GhostConv, primary: torch.Tensor, source: torch.Tensor, inputs: torch.Tensor
) -> float:
    """Least-squares cheap kernels (and biases) on the real primary outputs; returns the relative
    output error of the whole Ghost module (primary channels are exact)."""
    bias, d = conv.bias is not None, block.cheap.kernel_size[0]
    ghosts = block.cheap.out_channels // block.primary.out_channels
    used = (source >= 0).nonzero().flatten()
    with torch.no_grad():
        out = conv(inputs)
        h, w = out.shape[2:]
        padded = F.pad(out[:, primary], [d // 2] * 4)  # what the cheap conv sees, zero border included
        taps = [_rows(padded[:, :, ty : ty + h, tx : tx + w], 4096) for ty in range(d) for tx in range(d)]
        feats = _with_ones(torch.stack(taps, -1)[:, used // ghosts].transpose(0, 1), bias)  # (U, rows, d²[+1])
        rows = _rows(out, 4096)
        target = rows[:, source[used]].T[..., None]  # (U, rows, 1)
        solution = _ridge(feats, target)
        block.cheap.weight[used] = solution[:, : d * d, 0].reshape(-1, 1, d, d).to(block.cheap.weight.dtype)
        if bias:
            block.cheap.bias[used] = solution[:, -1, 0].to(block.cheap.bias.dtype)
    residual = (feats @ solution - target).square().sum()
    return (residual / rows.square().sum().clamp_min(1e-300)).sqrt().item()


# --- transforms and their replays -----------------------------------------------------------------


def to_depthwise_separable(
    model: nn.Module,
    *,
    include: Selector = None,
    exclude: Selector = None,
    calibration: torch.Tensor | None = None,
) -> nn.Module:
    """A new model whose selected k×k convolutions (groups=1) are depthwise k×k + pointwise 1×1,
    fitted to the original weights by a rank-1 SVD per input channel; with `calibration` images the
    pointwise weights are then refitted by least squares on each layer's real inputs. The
    original is untouched. `include`/`exclude`: module names (a name covers every conv under it)
    or a LayerSelection (names, regex, types); by default every eligible conv but the first."""
    names = select_layers(model, include, exclude, separable_reason, "to_depthwise_separable")
    inputs = layer_inputs(model, names, calibration) if calibration is not None else {}
    new = copy.deepcopy(model)
    layers = []
    for name in names:
        conv = new.get_submodule(name)
        block = SeparableConv(conv).to(conv.weight).train(conv.training)
        depthwise, pointwise, error = fit_separable(conv.weight.detach())
        with torch.no_grad():
            block.depthwise.weight.copy_(depthwise)
            block.pointwise.weight.copy_(pointwise)
            if conv.bias is not None:
                block.pointwise.bias.copy_(conv.bias)
        entry = {"name": name, "relative_error": round(error, 6)}
        if name in inputs:
            entry["output_error"] = round(refit_pointwise(conv, block, inputs[name]), 6)
        _set_module(new, name, block)
        layers.append(entry)
    return derive(model, new, SEPARABLE, {"layers": layers})


def to_ghost(
    model: nn.Module,
    ratio: int = 2,
    *,
    dw_size: int = 3,
    include: Selector = None,
    exclude: Selector = None,
    calibration: torch.Tensor | None = None,
) -> nn.Module:
    """A new model whose selected convolutions (groups=1) are Ghost modules keeping 1/ratio of the
    filters and making the rest with cheap dw_size×dw_size depthwise convs fitted by least squares
    to the weights, then with `calibration` images to each layer's real outputs. Layer selection
    as in `to_depthwise_separable`."""
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 2:
        raise ConfigError(f"to_ghost: ratio must be an integer >= 2, got {ratio!r}")
    if isinstance(dw_size, bool) or not isinstance(dw_size, int) or dw_size < 1 or dw_size % 2 == 0:
        raise ConfigError(f"to_ghost: dw_size must be an odd integer >= 1, got {dw_size!r}")
    names = select_layers(model, include, exclude, ghost_reason, "to_ghost")
    inputs = layer_inputs(model, names, calibration) if calibration is not None else {}
    new = copy.deepcopy(model)
    layers = []
    for name in names:
        conv = new.get_submodule(name)
        block = GhostConv(conv, ratio, dw_size).to(conv.weight).train(conv.training)
        *fit, error = fit_ghost(conv.weight, ratio, dw_size, conv.stride)
        primary, cheap, order, source = (t.to(conv.weight.device) for t in fit)
        with torch.no_grad():
            block.primary.weight.copy_(conv.weight[primary])
            block.cheap.weight.copy_(cheap)
            block.order.copy_(order)
            if conv.bias is not None:
                # cheap(p + b_j) = cheap(p) + b_j·ΣK away from the border: subtract it from the target bias.
                used = source >= 0
                parent = torch.arange(len(source), device=source.device) // (ratio - 1)
                block.primary.bias.copy_(conv.bias[primary])
                block.cheap.bias.zero_()
                spill = conv.bias[primary][parent[used]] * cheap[used].sum((1, 2, 3))
                block.cheap.bias[used] = conv.bias[source[used]] - spill
        entry = {"name": name, "relative_error": round(error, 6)}
        if name in inputs:
            entry["output_error"] = round(refit_cheap(conv, block, primary, source, inputs[name]), 6)
        _set_module(new, name, block)
        layers.append(entry)
    return derive(model, new, GHOST, {"ratio": ratio, "dw_size": dw_size, "layers": layers})


def _layer_names(plan: dict[str, Any], kind: str) -> list[str]:
    layers = plan.get("layers")
    if not isinstance(layers, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in layers):
        raise ModelError(f"replaying '{kind}': plan field 'layers' must be a list of {{'name': ...}} entries")
    return [x["name"] for x in layers]


@TRANSFORMS.register(SEPARABLE)
def replay_separable(model: nn.Module, plan: dict[str, Any]) -> nn.Module:
    """Rebuild the shapes of a depthwise-separable model (weights are loaded afterwards)."""
    for name in _layer_names(plan, SEPARABLE):
        conv = _replaceable(model, name, separable_reason, SEPARABLE)
        _set_module(model, name, SeparableConv(conv).train(conv.training))
    return model


@TRANSFORMS.register(GHOST)
def replay_ghost(model: nn.Module, plan: dict[str, Any]) -> nn.Module:
    """Rebuild the shapes of a Ghost-module model (weights and channel order are loaded afterwards)."""
    ratio, dw_size = plan.get("ratio"), plan.get("dw_size")
    if not isinstance(ratio, int) or ratio < 2 or not isinstance(dw_size, int) or dw_size < 1 or dw_size % 2 == 0:
        raise ModelError(
            f"replaying '{GHOST}': plan needs an integer ratio >= 2 and an odd dw_size, got {ratio!r}, {dw_size!r}"
        )
    for name in _layer_names(plan, GHOST):
        conv = _replaceable(model, name, ghost_reason, GHOST)
        _set_module(model, name, GhostConv(conv, ratio, dw_size).train(conv.training))
    return model
