"""`decompose(model, ...) -> new model`, and the "decompose" replay that rebuilds a decomposed
model's shapes from its plan so it saves as a state dict + JSON and loads again."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn
from pydantic import ValidationError

from deepshrink.errors import ConfigError, ModelError
from deepshrink.lowrank.config import (
    Advanced,
    DecomposeConfig,
    DecompositionPlan,
    EnergyRule,
    FixedRanks,
    LayerPlan,
    RankRule,
    RatioRule,
    VBMFRule,
)
from deepshrink.lowrank.methods import decomposer_for
from deepshrink.lowrank.ranks import RankContext, Target, select_ranks
from deepshrink.lowrank.selection import decomposable_layers, default_exclude, match_names, require_layer, set_module
from deepshrink.models.spec import TRANSFORMS, derive, spec_of

KIND = "decompose"


def decompose(
    model: nn.Module,
    config: DecomposeConfig | None = None,
    *,
    method: str | None = None,
    ratio: float | None = None,
    ranks: dict[str, int | tuple[int, int]] | str | None = None,
    energy: float | None = None,
    exclude: list[str] | tuple[str, ...] | None = None,
    calibration: torch.Tensor | None = None,
    **options: Any,
) -> nn.Module:
    """A new model with its convolutions and linear layers replaced by low-rank sequences.

    Give exactly one rank rule: `ratio` (whole model `ratio`x fewer params; options `budget=
    "params"|"macs"`, `allocation="uniform"|"sensitivity"`), `ranks` (a dict of layer name -> rank,
    or "vbmf") or `energy` (fraction of squared singular values kept). `method` is how convolutions
    are factorised: "tucker" (default), "cp", "svd" or "spatial"; linear layers use SVD.
    `exclude=None` keeps the first convolution and the classifier; `calibration` (input images)
    is needed by `allocation="sensitivity"`. `advanced={...}` sets solver knobs (see `Advanced`)."""
    if config is None:
        config = build_config(method=method, ratio=ratio, ranks=ranks, energy=energy, exclude=exclude, **options)
    elif any(v is not None for v in (method, ratio, ranks, energy, exclude)) or options:
        raise ConfigError("decompose: pass either a DecomposeConfig or keyword options, not both")
    targets = _targets(model, config)
    spec = spec_of(model)
    input_size = spec.input_size if spec else (tuple(calibration.shape[1:]) if calibration is not None else None)
    ctx = RankContext(model, input_size, config.advanced, calibration)
    selection = select_ranks(config.rule, targets, ctx)

    new = copy.deepcopy(model)
    layers = []
    for target in targets:
        rank = selection.ranks.get(target.name)
        if rank is None:
            continue
        module = selection.fitted.get((target.name, rank))
        if module is None:
            module = target.decomposer.fit(rank, config.advanced)
        set_module(new, target.name, module.train(target.decomposer.layer.training))
        layers.append(LayerPlan(name=target.name, method=target.decomposer.method, ranks=rank))
    plan = DecompositionPlan(method=config.method, layers=layers)
    return derive(model, new, KIND, plan.model_dump(mode="json"))


def build_config(
    *,
    method: str | None = None,
    ratio: float | None = None,
    ranks: dict[str, Any] | str | None = None,
    energy: float | None = None,
    exclude: list[str] | tuple[str, ...] | None = None,
    budget: str | None = None,
    allocation: str | None = None,
    advanced: dict[str, Any] | Advanced | None = None,
) -> DecomposeConfig:
    """The typed config from the keyword form of `decompose` (also used by the CLI)."""
    given = [name for name, value in (("ratio", ratio), ("ranks", ranks), ("energy", energy)) if value is not None]
    if len(given) != 1:
        raise ConfigError(
            "decompose: give exactly one rank rule: ratio=R, ranks={layer: rank} or ranks='vbmf', or energy=E"
            + (f" (got {', '.join(given)})" if given else "")
        )
    ratio_options = {k: v for k, v in (("budget", budget), ("allocation", allocation)) if v is not None}
    if ratio_options and ratio is None:
        raise ConfigError(f"decompose: {', '.join(ratio_options)} only apply with ratio=")
    rule: RankRule
    if ratio is not None:
        rule = RatioRule(ratio=ratio, **ratio_options)
    elif energy is not None:
        rule = EnergyRule(energy=energy)
    elif ranks == "vbmf":
        rule = VBMFRule()
    elif isinstance(ranks, dict):
        rule = FixedRanks(ranks=ranks)
    else:
        raise ConfigError(f"ranks: expected a dict of layer name -> rank or 'vbmf', got {ranks!r}")
    fields: dict[str, Any] = {"rule": rule, "exclude": exclude}
    if method is not None:
        fields["method"] = method
    if advanced is not None:
        fields["advanced"] = advanced if isinstance(advanced, Advanced) else Advanced(**advanced)
    return DecomposeConfig(**fields)


def _targets(model: nn.Module, config: DecomposeConfig) -> list[Target]:
    """The layers the rank rule will consider, in model order."""
    if isinstance(config.rule, FixedRanks):
        named = config.rule.ranks
        if config.exclude:
            clash = sorted(match_names(model, config.exclude, "exclude") & set(named))
            if clash:
                raise ConfigError(f"layer '{clash[0]}' is both excluded and given a rank")
        layers = {name: require_layer(model, name, "ranks") for name in named}
    else:
        protected = match_names(model, config.exclude, "exclude") if config.exclude is not None else set(default_exclude(model))
        layers = {
            name: layer
            for name, layer in decomposable_layers(model).items()
            if not any(name == p or name.startswith(p + ".") for p in protected)
        }
        if not layers:
            raise ConfigError("decompose: no Conv2d or Linear layer is left once the excluded layers are removed")
    return [Target(name, decomposer_for(name, layer, config.method)) for name, layer in layers.items()]


@TRANSFORMS.register(KIND)
def replay(model: nn.Module, plan: dict[str, Any]) -> nn.Module:
    """Rebuild the decomposed layers' shapes on a fresh model (weights are loaded afterwards)."""
    try:
        parsed = DecompositionPlan.model_validate(plan)
    except ValidationError as exc:
        raise ModelError(f"transform '{KIND}': invalid plan ({exc.errors()[0]['msg']} at {exc.errors()[0]['loc']})") from None
    for entry in parsed.layers:
        try:
            layer = model.get_submodule(entry.name)
        except AttributeError:
            raise ModelError(f"transform '{KIND}': the model has no layer '{entry.name}'") from None
        decomposer = decomposer_for(entry.name, layer, entry.method)
        if decomposer.method is not entry.method:
            raise ModelError(
                f"transform '{KIND}': layer '{entry.name}' ({decomposer.describe()}) cannot use method "
                f"'{entry.method.value}'"
            )
        rebuilt = decomposer.build(decomposer.normalise(entry.ranks)).train(layer.training)
        set_module(model, entry.name, rebuilt)
    return model
