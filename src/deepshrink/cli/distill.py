"""Distillation commands: `distill`, `kd-weights` (seed 001 eq. 7) and `kd-sweep` (its Table 2).

Each builds a DistillConfig (from --recipe, then the flags on top), calls the library and writes
the resolved config next to its outputs."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import click

from deepshrink.cli.common import build_model, console, data_option, print_kv_table, read_options_file
from deepshrink.errors import ConfigError

_TRAIN_FLAGS = ("epochs", "batch_size", "lr", "optimizer", "schedule", "seed", "limit_batches")


def _train_options(func: Callable) -> Callable:
    """Training flags shared by the three commands; unset ones keep the recipe's or TrainConfig's value."""

    @click.option("--epochs", type=int, default=None, help="Training epochs (per run).")
    @click.option("--batch-size", type=int, default=None)
    @click.option("--lr", type=float, default=None)
    @click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None)
    @click.option("--schedule", type=click.Choice(["cosine", "step", "onecycle", "constant"]), default=None)
    @click.option("--seed", type=int, default=None, help="Seed of data order and initialisation (default 0).")
    @click.option("--limit-batches", type=int, default=None, help="Cap batches per epoch (smoke runs).")
    @click.option("--no-augment", is_flag=True, help="Train without random crop/flip (needed to cache teacher logits).")
    @click.option("--temperature", type=float, default=None, help="Softmax temperature T (default 4).")
    @click.option("--recipe", type=click.Path(dir_okay=False, exists=True), default=None,
                  help="YAML/JSON distillation section (losses, weights, train, ...); flags override it.")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def _config(options: dict[str, Any], **fields: Any):
    """DistillConfig from the recipe file, overridden by the flags that were given."""
    from deepshrink.distillation import DistillConfig

    base = read_options_file(options.get("recipe"), "distillation")
    train = dict(base.get("train") or {})
    train.update({k: options[k] for k in _TRAIN_FLAGS if options.get(k) is not None})
    if options.get("no_augment"):
        train["augment"] = False
    if options.get("temperature") is not None:
        base["temperature"] = options["temperature"]
    base.update({k: v for k, v in fields.items() if v is not None})
    return DistillConfig(**{**base, "train": train})


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} '{text}': expected comma-separated numbers, e.g. 0.1,0.9") from None


def _kd_weights(text: str | None) -> Any:
    if text is None:
        return None
    if text.strip().lower() == "auto":
        return "auto"
    values = _floats(text, "--kd-weights")
    if len(values) != 2:
        raise ConfigError(f"--kd-weights '{text}': expected 'auto' or two numbers alpha,beta (e.g. 0.1,0.9)")
    return {"alpha": values[0], "beta": values[1]}


def _models(names: tuple[str, ...], weights: tuple[str, ...], role: str, data: Any) -> list:

    if len(weights) > len(names):
        raise ConfigError(f"--{role}-weights given {len(weights)} times for {len(names)} --{role} models")
    padded = list(weights) + [None] * (len(names) - len(weights))
    return [build_model(name, path, data) for name, path in zip(names, padded)]


def _load_data(spec: str, seed: int | None):
    from deepshrink.data import load_data

    return load_data(spec, seed=seed or 0)


@click.command("distill")
@click.option("--student", required=True, help="Zoo name, package.module:factory, or a deepshrink model directory.")
@click.option("--student-weights", type=click.Path(dir_okay=False), default=None, help="Student checkpoint.")
@click.option("--teacher", "teachers", multiple=True, required=True, help="Teacher model (repeat for several).")
@click.option("--teacher-weights", "teacher_paths", multiple=True, type=click.Path(dir_okay=False),
              help="Teacher checkpoint, paired with --teacher in order.")
@click.option("--teacher-mix", default=None, help="Weights of the teachers, e.g. 0.7,0.3 (default: equal).")
@data_option()
@click.option("--loss", "loss_names", default=None, help="Comma-separated losses, e.g. kd,at (default kd).")
@click.option("--kd-weights", default=None, help="alpha,beta of seed 001 eq. 1 (e.g. 0.1,0.9), or 'auto' (eq. 7).")
@click.option("--cache-teacher-logits/--no-cache-teacher-logits", default=None,
              help="Reuse teacher logits of repeated images (needs --no-augment).")
@click.option("--hint-epochs", type=int, default=None,
              help="Two-stage training (FitNets, FSP): first N epochs on the feature losses alone, then --epochs "
                   "on the labels and logit losses.")
@_train_options
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--resume", is_flag=True, help="Continue from OUT/train/checkpoint.pt.")
def distill_command(student, student_weights, teachers, teacher_paths, teacher_mix, data_spec, loss_names, kd_weights,
                    cache_teacher_logits, hint_epochs, out, resume, **options) -> None:
    """Distil one or more teachers into a student and save it.

    Example: deepshrink distill --student resnet20 --teacher resnet56 --teacher-weights r56.pth
    --data imagefolder:../shared/datasets/cifar10-jpeg.tar.gz --loss kd,at --epochs 15 --out runs/kd
    """
    from deepshrink.distillation import distill
    from deepshrink.fileio import write_json
    from deepshrink.metrics import evaluate
    from deepshrink.models import save_model

    losses = [name.strip() for name in loss_names.split(",") if name.strip()] if loss_names else None
    config = _config(options, losses=losses, weights=_kd_weights(kd_weights),
                     teacher_weights=_floats(teacher_mix, "--teacher-mix"), cache_teacher_logits=cache_teacher_logits,
                     hint_epochs=hint_epochs)
    data = _load_data(data_spec, options.get("seed"))
    model = _models((student,), (student_weights,) if student_weights else (), "student", data)[0]
    teacher_models = _models(teachers, teacher_paths, "teacher", data)
    out_dir = Path(out)
    write_json(out_dir / "distill_config.json", config.model_dump(mode="json"))
    result = distill(model, teacher_models, data, config, out_dir=out_dir / "train", resume=resume)
    metrics = evaluate(result.model, data, split="test", limit_batches=config.train.limit_batches)
    save_model(result.model, out_dir / "model")
    write_json(out_dir / "distill_config.json", result.config.model_dump(mode="json"))  # weights resolved
    write_json(out_dir / "metrics.json", {"test": metrics, **result.summary()})
    if result.allocation is not None:
        _print_allocation(result.allocation)
    print_kv_table("test", metrics)
    console.print(f"wrote {out_dir / 'model'}")


@click.command("kd-weights")
@click.option("--teacher", required=True, help="Network A, the teacher.")
@click.option("--teacher-weights", type=click.Path(dir_okay=False), default=None)
@click.option("--second", required=True, help="Network B, the second source (e.g. the student before compression).")
@click.option("--second-weights", type=click.Path(dir_okay=False), default=None)
@click.option("--probe", default=None, help="Zoo name of the probe student C (default: a fresh --second architecture).")
@data_option()
@click.option("--probe-weights", default="0.1,0.9", show_default=True,
              help="alpha,beta used in both probe distillations.")
@click.option("--repeats", type=int, default=1, show_default=True, help="Average over this many seeds.")
@click.option("--split", type=click.Choice(["val", "test"]), default="val", show_default=True)
@_train_options
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the measurement to this JSON file.")
def kd_weights_command(teacher, teacher_weights, second, second_weights, probe, data_spec, probe_weights, repeats,
                       split, out, **options) -> None:
    """Seed 001 eq. 7: measure I_A and I_B on a probe student and print alpha and beta.

    Example: deepshrink kd-weights --teacher resnet56 --teacher-weights r56.pth --second resnet20
    --second-weights r20.pth --data imagefolder:../shared/datasets/cifar10-jpeg.tar.gz --epochs 2
    """
    from deepshrink.distillation import allocate_weights
    from deepshrink.fileio import write_json

    pw = _kd_weights(probe_weights)
    if not isinstance(pw, dict):
        raise ConfigError("--probe-weights: expected two numbers alpha,beta (the probes need fixed weights)")
    auto = {"probe": probe, "probe_weights": pw, "repeats": repeats, "split": split}
    if options.get("epochs") is not None:
        auto["epochs"] = options["epochs"]
    config = _config(options, auto=auto)
    data = _load_data(data_spec, options.get("seed"))
    a = _models((teacher,), (teacher_weights,) if teacher_weights else (), "teacher", data)[0]
    b = _models((second,), (second_weights,) if second_weights else (), "second", data)[0]
    allocation = allocate_weights(a, b, data, config)
    _print_allocation(allocation)
    if out:
        write_json(out, {"config": config.model_dump(mode="json"), "allocation": allocation.as_dict()})
        console.print(f"wrote {out}")


@click.command("kd-sweep")
@click.option("--student", required=True)
@click.option("--student-weights", type=click.Path(dir_okay=False), default=None)
@click.option("--teacher", required=True)
@click.option("--teacher-weights", type=click.Path(dir_okay=False), default=None)
@data_option()
@click.option("--alphas", default="1.0,0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1", show_default=True)
@click.option("--with-auto", is_flag=True, help="Also measure eq. 7 (B = the student) and mark it on the plot.")
@_train_options
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Writes sweep.json and sweep.png here.")
def kd_sweep_command(student, student_weights, teacher, teacher_weights, data_spec, alphas, with_auto, out,
                     **options) -> None:
    """Seed 001 Table 2: accuracy after distillation for each alpha (beta = 1 - alpha), with a plot.

    Example: deepshrink kd-sweep --student resnet20 --student-weights r20.pth --teacher resnet56
    --teacher-weights r56.pth --data imagefolder:../shared/datasets/cifar10-jpeg.tar.gz --epochs 3 --out runs/sweep
    """
    from rich.table import Table

    from deepshrink.distillation import allocate_weights, plot_sweep, sweep_alpha
    from deepshrink.fileio import write_json

    config = _config(options)
    data = _load_data(data_spec, options.get("seed"))
    s = _models((student,), (student_weights,) if student_weights else (), "student", data)[0]
    t = _models((teacher,), (teacher_weights,) if teacher_weights else (), "teacher", data)[0]
    allocation = allocate_weights(t, s, data, config) if with_auto else None
    points = sweep_alpha(s, t, data, config, alphas=_floats(alphas, "--alphas") or [])
    out_dir = Path(out)
    write_json(out_dir / "sweep.json", {
        "config": config.model_dump(mode="json"),
        "points": [vars(p) for p in points],
        "allocation": allocation.as_dict() if allocation else None,
    })
    plot_sweep(points, out_dir / "sweep.png", allocation=allocation)
    table = Table("alpha", "beta", "top-1 %", title="accuracy after distillation (seed 001 Table 2)",
                  title_justify="left")
    for p in points:
        table.add_row(f"{p.alpha:.2f}", f"{p.beta:.2f}", f"{p.top1:.2f}")
    console.print(table)
    if allocation is not None:
        _print_allocation(allocation)
    console.print(f"wrote {out_dir / 'sweep.json'} and {out_dir / 'sweep.png'}")


def _print_allocation(allocation) -> None:
    w = allocation.weights
    print_kv_table("interpretable weight allocation (seed 001 eq. 7)", {
        f"probe top-1 alone ({allocation.split})": allocation.baseline_top1,
        "probe top-1 distilled from A (teacher)": allocation.teacher_top1,
        "probe top-1 distilled from B (second)": allocation.second_top1,
        "I_A (points)": allocation.improvement_teacher,
        "I_B (points)": allocation.improvement_second,
        "beta, teacher term CE(q, p) = I_A / (I_A + I_B)": w.beta,
        "alpha, label term CE(y, p) = I_B / (I_A + I_B)": w.alpha,
        "rule": allocation.rule,
    })


def register(group: click.Group) -> None:
    for command in (distill_command, kd_weights_command, kd_sweep_command):
        group.add_command(command)
