"""`deepshrink detect train|eval|profile`: the foundation commands for detectors and detection
data (`yolo:PATH`, `voc:PATH`, `coco:PATH`); `eval` reports mAP@0.5 and mAP@0.5:0.95."""

from __future__ import annotations

from pathlib import Path

import click

from deepshrink.cli.common import (
    console,
    model_options,
    parse_input_size,
    parse_int_list,
    print_kv_table,
    write_json_file,
)

DATA_HELP = "Detection data: yolo:PATH | voc:PATH | coco:PATH (directory or .tar/.tar.gz)."


def is_detector(name: str) -> bool:
    """Whether --model names a zoo detector or a model directory holding one."""
    import deepshrink.detection.models  # noqa: F401  (registers the detectors)
    from deepshrink.fileio import read_json
    from deepshrink.models import MODELS, is_model_dir
    from deepshrink.models.persist import SPEC_FILE

    arch = read_json(Path(name) / SPEC_FILE).get("arch") if is_model_dir(Path(name)) else name
    return arch in MODELS.names() and MODELS.meta(arch).get("task") == "detection"


def _data(spec: str, image_size: int):
    from deepshrink.detection import load_detection

    return load_detection(spec, image_size=image_size)


def _model(name: str, weights: str | None, data=None, *, width_mult: float | None = None,
           depth_mult: float | None = None, input_size=None):
    """A directory written by deepshrink, or a zoo detector built for the data's classes and size."""
    import deepshrink.detection.models  # noqa: F401  (registers fcos_resnet, fcos_mobilenet_v2)
    from deepshrink.models import create_model, is_model_dir, load_weights, resolve_model

    if is_model_dir(Path(name)):
        return resolve_model(name, weights=weights)
    kwargs = {k: v for k, v in {"width_mult": width_mult, "depth_mult": depth_mult}.items() if v is not None}
    if data is not None:
        kwargs.update(num_classes=data.num_classes, input_size=data.input_size, mean=data.mean, std=data.std)
    elif input_size is not None:
        kwargs["input_size"] = input_size
    model = create_model(name, **kwargs)
    return load_weights(model, weights) if weights is not None else model


def _print_map(title: str, result) -> None:
    from rich.table import Table

    table = Table("class", "AP@0.5", "AP@0.5:0.95", title=title, title_justify="left")
    for name, ap in result.per_class.items():
        table.add_row(name, *("-" if ap[k] is None else f"{ap[k]:.2f}" for k in ("ap50", "ap")))
    table.add_row("[bold]mean[/]", f"{result.map50:.2f}", f"{result.map50_95:.2f}")
    console.print(table)


@click.group("detect")
def detect() -> None:
    """Object detection: train, evaluate (mAP) and profile detectors."""


@detect.command("train")
@model_options
@click.option("--data", "data_spec", required=True, help=DATA_HELP)
@click.option("--image-size", type=int, default=320, show_default=True, help="Letterbox side (multiple of 32).")
@click.option("--width-mult", type=float, default=None, help="Detector width multiplier (zoo models).")
@click.option("--depth-mult", type=float, default=None, help="Detector depth multiplier (zoo models).")
@click.option("--epochs", type=int, default=None, help="Epochs (default from the config: 30).")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=None)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None)
@click.option("--warmup-epochs", type=float, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit-batches", type=int, default=None, help="Batches per epoch (smoke runs).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
def train_command(model_name, weights, data_spec, image_size, width_mult, depth_mult, epochs, batch_size, lr,
                  optimizer, warmup_epochs, seed, limit_batches, out, resume) -> None:
    """Train a detector (FCOS losses, box-aware augmentation, EMA weights, val mAP per epoch).

    Example: deepshrink detect train --model fcos_mobilenet_v2
    --data yolo:../shared/datasets/highway-det-320.tar.gz --epochs 30 --out runs/det
    """
    from deepshrink.detection import evaluate_detector, train_detector
    from deepshrink.fileio import write_json
    from deepshrink.models import save_model
    from deepshrink.training import TrainConfig

    data = _data(data_spec, image_size)
    model = _model(model_name, weights, data, width_mult=width_mult, depth_mult=depth_mult)
    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
                 "warmup_epochs": warmup_epochs, "seed": seed, "limit_batches": limit_batches}
    config = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    result = train_detector(model, data, config, out_dir=Path(out), resume=resume)
    test = evaluate_detector(result.model, data, split="test", batch_size=batch_size)
    save_model(result.model, Path(out) / "model")
    write_json(Path(out) / "metrics.json", {"test": test.to_dict(), "history": result.history})
    _print_map(f"test mAP of {model_name} ({test.images} images)", test)
    console.print(f"model written to {Path(out) / 'model'}")


@detect.command("eval")
@model_options
@click.option("--data", "data_spec", required=True, help=DATA_HELP)
@click.option("--image-size", type=int, default=320, show_default=True, help="Letterbox side (multiple of 32).")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the metrics here.")
def eval_command(model_name, weights, data_spec, image_size, split, batch_size, json_path) -> None:
    """mAP@0.5 and mAP@0.5:0.95 (COCO evaluation via pycocotools), per class.

    Example: deepshrink detect eval --model runs/det/model --data yolo:../shared/datasets/highway-det-320.tar.gz
    """
    from deepshrink.detection import evaluate_detector

    data = _data(data_spec, image_size)
    result = evaluate_detector(_model(model_name, weights, data), data, split=split, batch_size=batch_size)
    _print_map(f"{split} mAP of {model_name} ({result.images} images)", result)
    write_json_file(json_path, result.to_dict())


@detect.command("profile")
@model_options
@click.option("--input-size", default=None, help="CxHxW, e.g. 3x320x320 (default: the model's).")
@click.option("--batch-sizes", default="1", show_default=True, help="Latency batch sizes.")
@click.option("--runtimes", default="eager,ort", show_default=True, help="Latency runtimes: eager, ort.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the profile here.")
def profile_command(model_name, weights, input_size, batch_sizes, runtimes, json_path) -> None:
    """Parameters, MACs at the detector's input size, bytes, and latency without and with NMS.

    Example: deepshrink detect profile --model fcos_resnet --input-size 3x320x320
    """
    from deepshrink.detection import profile_detector

    size = parse_input_size(input_size)
    model = _model(model_name, weights, input_size=size)
    result = profile_detector(model, size, batch_sizes=parse_int_list(batch_sizes, "--batch-sizes"),
                              runtimes=tuple(r.strip() for r in runtimes.split(",") if r.strip()))
    payload = result.to_dict()
    shown = {k: v for k, v in payload.items() if k not in ("macs_per_layer", "latency_p90_ms")}
    print_kv_table(f"profile of {model_name}", shown)
    write_json_file(json_path, payload)


def register(group: click.Group) -> None:
    group.add_command(detect)
