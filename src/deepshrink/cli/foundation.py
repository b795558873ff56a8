"""Foundation commands: demo, models, train, eval, profile."""

from __future__ import annotations

from pathlib import Path

import click

from deepshrink.cli.common import (
    build_model,
    console,
    data_option,
    model_options,
    parse_input_size,
    parse_int_list,
    print_kv_table,
    write_json_file,
)
from deepshrink.errors import ConfigError


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True, help="Output directory.")
def demo(out: str) -> None:
    """Run the whole pipeline (train, FPGM prune, distil, int8, ONNX) on the embedded digits data.

    Example: deepshrink demo --out runs/demo
    """
    from deepshrink.demo import run_demo

    run_demo(Path(out))


@click.command("models")
def list_models_command() -> None:
    """List the model zoo. Example: deepshrink models"""
    from rich.table import Table

    from deepshrink.models import MODELS, list_models

    table = Table("name", "input", "params", "description")
    for name in list_models():
        meta = MODELS.meta(name)
        table.add_row(name, "x".join(map(str, meta.get("input_size", ()))), f"{meta.get('params', 0):,}",
                      meta.get("description", ""))
    console.print(table)


@click.command()
@model_options
@data_option()
@click.option("--epochs", type=int, default=None, help="Epochs (default from the config: 30).")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None)
@click.option("--schedule", type=click.Choice(["cosine", "step", "onecycle", "constant"]), default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit-batches", type=int, default=None, help="Train/evaluate on this many batches only (smoke runs).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory (model, checkpoints, metrics).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
def train(model_name, weights, data_spec, epochs, batch_size, lr, optimizer, schedule, seed, limit_batches, out, resume) -> None:
    """Train or fine-tune a model.

    Example: deepshrink train --model resnet20 --data imagefolder:../shared/datasets/cifar10-jpeg.tar.gz --epochs 30 --out runs/r20
    """
    from deepshrink.cli import detect
    from deepshrink.data import load_data
    from deepshrink.detection import is_detection_spec
    from deepshrink.fileio import write_json
    from deepshrink.metrics import evaluate
    from deepshrink.models import save_model
    from deepshrink.training import TrainConfig
    from deepshrink.training import train as run_training

    if is_detection_spec(data_spec):  # detection data: the detector trainer (FCOS losses, mAP)
        if schedule is not None:
            raise ConfigError("--schedule: detectors train with warm-up + cosine; drop it, or see `deepshrink detect train`")
        click.get_current_context().invoke(
            detect.train_command, model_name=model_name, weights=weights, data_spec=data_spec, epochs=epochs,
            batch_size=batch_size or 16, lr=lr, optimizer=optimizer, seed=seed, limit_batches=limit_batches,
            out=out, resume=resume)
        return
    data = load_data(data_spec, seed=seed)
    model = build_model(model_name, weights, data)
    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "schedule": schedule,
                 "seed": seed, "limit_batches": limit_batches}
    config = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    result = run_training(model, data, config, out_dir=Path(out), resume=resume)
    metrics = evaluate(result.model, data, split="test", limit_batches=limit_batches)
    save_model(result.model, Path(out) / "model")
    write_json(Path(out) / "metrics.json", {"test": metrics, "history": result.history})
    print_kv_table("test", metrics)
    console.print(f"model written to {Path(out) / 'model'}")


@click.command("eval")
@model_options
@data_option()
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the metrics here.")
def eval_command(model_name, weights, data_spec, split, batch_size, json_path) -> None:
    """Evaluate top-1/top-5 accuracy.

    Example: deepshrink eval --model resnet32 --weights ../shared/weights/resnet-cifar10/resnet32-d509ac18.th --data imagefolder:../shared/datasets/cifar10-jpeg.tar.gz
    """
    from deepshrink.cli import detect
    from deepshrink.data import load_data
    from deepshrink.detection import is_detection_spec
    from deepshrink.metrics import evaluate

    if is_detection_spec(data_spec):  # detection data: mAP, per class
        context = click.get_current_context()
        default_batch = context.get_parameter_source("batch_size") is click.core.ParameterSource.DEFAULT
        context.invoke(detect.eval_command, model_name=model_name, weights=weights, data_spec=data_spec, split=split,
                       batch_size=16 if default_batch else batch_size, json_path=json_path)
        return
    data = load_data(data_spec)
    model = build_model(model_name, weights, data)
    metrics = evaluate(model, data, split=split, batch_size=batch_size)
    console.print(f"top-1 {metrics['top1']:.2f} %   top-5 {metrics['top5']:.2f} %   ({metrics['n']} {split} images)")
    write_json_file(json_path, metrics)


@click.command()
@model_options
@click.option("--input-size", default=None, help="CxHxW of one example, e.g. 3x32x32 (default: the model's).")
@click.option("--num-classes", type=int, default=None, help="Classes of a zoo model (default: its registered count).")
@click.option("--batch-sizes", default="1,64", show_default=True, help="Latency batch sizes.")
@click.option("--runtimes", default="eager,ort", show_default=True, help="Latency runtimes: eager, ort.")
@click.option("--ort-nodes", type=int, default=0, show_default=True,
              help="Also list the N slowest ONNX Runtime nodes and the time per operator type (largest batch, 1 thread).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the profile here.")
def profile(model_name, weights, input_size, num_classes, batch_sizes, runtimes, ort_nodes, json_path) -> None:
    """Parameters, MACs, bytes on disk and latency (PyTorch eager and ONNX Runtime).

    Example: deepshrink profile --model resnet32 --input-size 3x32x32 --json profile.json
    """
    from deepshrink.cli import detect
    from deepshrink.metrics import profile as run_profile
    from deepshrink.models import resolve_model

    if detect.is_detector(model_name):  # latency without and with decode + NMS
        if num_classes is not None or ort_nodes:
            raise ConfigError("--num-classes and --ort-nodes apply to classifiers; a detector takes its classes from its data")
        click.get_current_context().invoke(detect.profile_command, model_name=model_name, weights=weights,
                                           input_size=input_size, batch_sizes=batch_sizes, runtimes=runtimes,
                                           json_path=json_path)
        return
    size = parse_input_size(input_size)
    model = resolve_model(model_name, weights=weights, num_classes=num_classes, input_size=size)
    result = run_profile(
        model, size, batch_sizes=parse_int_list(batch_sizes, "--batch-sizes"),
        runtimes=tuple(r.strip() for r in runtimes.split(",") if r.strip()),
    )
    payload = result.to_dict()
    print_kv_table(f"profile of {model_name}", {k: v for k, v in payload.items() if k != "macs_per_layer"})
    if ort_nodes > 0:
        batch = max(parse_int_list(batch_sizes, "--batch-sizes"))
        payload["ort_nodes"] = _ort_nodes(model, result.input_size, batch, ort_nodes)
        print_kv_table(f"ONNX Runtime ms per operator, batch {batch}", payload["ort_nodes"]["op_ms"])
        print_kv_table("slowest nodes (ms)", {f"{n['name']} ({n['op']})": n["ms"] for n in payload["ort_nodes"]["slowest"]})
    write_json_file(json_path, payload)


def _ort_nodes(model, input_size, batch: int, count: int) -> dict:
    import tempfile
    from pathlib import Path

    from deepshrink.export import export_onnx
    from deepshrink.metrics.ort_profile import op_totals, ort_node_times

    with tempfile.TemporaryDirectory() as tmp:
        times = ort_node_times(export_onnx(model, Path(tmp) / "model.onnx", input_size), batch, input_size)
    slowest = sorted(times, key=lambda node: -node.ms)[:count]
    return {"batch": batch, "threads": 1, "op_ms": {k: round(v, 4) for k, v in op_totals(times).items()},
            "slowest": [{"name": n.name, "op": n.op, "ms": round(n.ms, 4), "input_shapes": n.input_shapes} for n in slowest]}


def register(group: click.Group) -> None:
    for command in (demo, list_models_command, train, eval_command, profile):
        group.add_command(command)
