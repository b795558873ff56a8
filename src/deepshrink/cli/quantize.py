"""`deepshrink quantize`: PTQ or QAT, int8 ONNX export, and the deployed model measured."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from deepshrink.cli.common import build_model, console, data_option, model_options, print_kv_table
from deepshrink.errors import ConfigError
from deepshrink.threads import torch_threads

_OBSERVERS = ["minmax", "moving_average", "percentile", "mse", "kl"]
_WEIGHTS = ["minmax", "mse", "lsq", "lsq_midrise", "dorefa", "bwn", "twn"]
_ACTS = ["observer", "lsq", "pact", "binary"]


def _bits_or_none(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--first-last-bits '{text}': expected an integer from 1 to 8, or 'none'") from None


@click.command("quantize")
@model_options
@data_option()
@click.option("--method", type=click.Choice(["ptq", "qat"]), default="ptq", show_default=True)
@click.option("--bits", type=int, default=None, help="Weight bits, 1..8 (default 8; bwn/twn fix their own).")
@click.option("--act-bits", type=int, default=None, help="Activation bits (default: --bits).")
@click.option("--observer", type=click.Choice(_OBSERVERS), default=None, help="Activation range observer (default: minmax for ptq, mse for qat).")
@click.option("--weight-quantizer", type=click.Choice(_WEIGHTS), default=None, help="Default: minmax (ptq), lsq (qat).")
@click.option("--act-quantizer", type=click.Choice(_ACTS), default=None, help="Default: observer (ptq), lsq (qat).")
@click.option("--first-last-bits", default="8", show_default=True, help="Bits of the first and last layer, or 'none'.")
@click.option("--keep-float", multiple=True, help="Layer (fnmatch pattern) to leave in floating point; repeatable.")
@click.option("--latency-fallback", is_flag=True,
              help="Also leave in float the convolutions whose int8 kernel runs slower than float on this CPU "
                   "(timed per layer, kept only if the whole graph is faster; writes latency_fallback.json).")
@click.option("--calibration-size", type=int, default=512, show_default=True, help="Calibration images (train split).")
@click.option("--equalize", is_flag=True, help="Cross-layer equalisation before quantising.")
@click.option("--bias-correction", is_flag=True, help="Empirical bias correction after calibration.")
@click.option("--reduce-range/--full-range", default=None,
              help="8-bit weights on the 7-bit grid, which x86 CPUs without VNNI run without saturating "
                   "(default: on exactly when this CPU lacks VNNI).")
@click.option("--progressive", multiple=True, metavar="BITS[:EPOCHS]",
              help="QAT first at this higher bit-width (epochs default: --epochs), the next run starting from its "
                   "weights; repeatable, highest first. E.g. --bits 2 --weight-quantizer lsq_midrise --progressive 4:3.")
@click.option("--distill-weight", type=float, default=None,
              help="QAT: weight of the KL divergence to the float model's logits beside cross-entropy (default 0: off).")
@click.option("--epochs", type=int, default=None, help="QAT epochs (default 3).")
@click.option("--lr", type=float, default=None, help="QAT peak learning rate (default 3e-4).")
@click.option("--limit-batches", type=int, default=None, help="Evaluate (and train) on this many batches only.")
@click.option("--latency/--no-latency", default=True, show_default=True, help="Time FP32 and int8 ONNX Runtime.")
@click.option("--threads", type=int, default=None, help="Threads for ONNX Runtime timing and the latency fallback (default: PyTorch's).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--resume", is_flag=True, help="QAT: continue from OUT/train/checkpoint.pt (written every epoch).")
def quantize(model_name, weights, data_spec, method, bits, act_bits, observer, weight_quantizer, act_quantizer,
             first_last_bits, keep_float, latency_fallback, calibration_size, equalize, bias_correction, reduce_range, progressive, distill_weight, epochs, lr, limit_batches,
             latency, threads, out, resume) -> None:
    """Quantise a trained model and measure the deployed int8 ONNX Runtime model.

    Writes OUT/model.json + model.safetensors (reload with deepshrink.load), OUT/model.int8.onnx,
    OUT/model.fp32.onnx, OUT/quantize.json (the resolved options) and OUT/metrics.json.

    Example: deepshrink quantize --model resnet20 --weights ../shared/weights/cifar10-jpeg/resnet20.pth
    --data imagefolder:../shared/datasets/cifar10-jpeg.tar.gz --method ptq --bits 8 --observer mse --out runs/q
    """
    from deepshrink.data import load_data
    from deepshrink.fileio import write_json
    from deepshrink.models import save_model
    from deepshrink.quantization import QuantizeConfig
    from deepshrink.quantization import quantize as run_quantize

    options: dict[str, Any] = {"method": method, "calibration_size": calibration_size,
                               "first_last_bits": _bits_or_none(first_last_bits), "keep_float": list(keep_float),
                               "advanced": {"equalize": equalize, "bias_correction": bias_correction, "reduce_range": reduce_range,
                                            "latency_fallback": latency_fallback}}
    if distill_weight is not None:
        options["advanced"]["distill_weight"] = distill_weight
    extra = {"bits": bits, "act_bits": act_bits, "observer": observer, "weight": weight_quantizer, "activation": act_quantizer}
    options.update({k: v for k, v in extra.items() if v is not None})
    if progressive:
        options["progressive"] = list(progressive)
    for flag, value in (("--resume", resume), ("--distill-weight", distill_weight)):
        if value and method != "qat":
            raise ConfigError(f"{flag}: only --method qat trains; post-training quantisation has no use for it")
    if method == "qat":
        from deepshrink.quantization.qat import QAT_DEFAULTS

        training = {"epochs": epochs, "lr": lr, "limit_batches": limit_batches}
        options["train"] = {**QAT_DEFAULTS, **{k: v for k, v in training.items() if v is not None}}
    config = QuantizeConfig(**options)  # validated before any data is read
    data = load_data(data_spec)
    model = build_model(model_name, weights, data)
    out_dir = Path(out)
    write_json(out_dir / "quantize.json", config.model_dump(mode="json"))
    # the fallback times kernels at PyTorch's thread count: the count the latency below is measured at
    with torch_threads(threads) if threads and latency_fallback else contextlib.nullcontext():
        result = run_quantize(model, data, config=config, onnx_path=out_dir / "model.int8.onnx",
                              train_dir=out_dir / "train" if method == "qat" else None, resume=resume)
    save_model(result.model, out_dir)
    for index, stage in enumerate(result.report.get("progressive", []), 1):
        history = stage.get("qat_history", [])
        val = f", validation top-1 {history[-1]['val_top1']:.2f} %" if history and "val_top1" in history[-1] else ""
        console.print(f"progressive stage {index}: W{stage['bits']}A{stage['act_bits']} {stage['weight']}, "
                      f"{len(history)} epoch{'' if len(history) == 1 else 's'} of QAT{val}")
    if latency_fallback:
        _report_fallback(result.report["latency_fallback"], out_dir)
    metrics = measure(model, result, data, out_dir, limit_batches=limit_batches, latency=latency, threads=threads)
    write_json(out_dir / "metrics.json", metrics)
    print_kv_table("quantize", {k: v for k, v in metrics.items() if not isinstance(v, dict)})
    if metrics.get("speedup_b64", 1.0) < 1.0:
        from deepshrink.quantization.cpu import int8_dot_saturates

        why = " (this CPU has no VNNI: its int8 kernels gain little, least on narrow layers)" if int8_dot_saturates() else ""
        console.print(f"[yellow]note: the int8 graph ran {1 / metrics['speedup_b64']:.2f}x slower than FP32 at batch 64"
                      f"{why}; it still saves {1 / metrics['int8_file_ratio']:.1f}x in size[/yellow]")


def _report_fallback(found: dict, out_dir: Path) -> None:
    from deepshrink.fileio import write_json

    write_json(out_dir / "latency_fallback.json", found)
    if found["keep_float"]:
        console.print(f"latency fallback: {', '.join(found['keep_float'])} stay in float "
                      f"(whole graph {found['int8_ms']:.3f} -> {found['fallback_ms']:.3f} ms at batch 1)")
    else:
        console.print(f"latency fallback: no layer left in float ({len(found['candidates'])} ran slower in int8 "
                      "alone; the whole graph was not faster without them)")


def measure(model, result, data, out_dir: Path, *, limit_batches: int | None, latency: bool, threads: int | None) -> dict:
    """Top-1 of the float, fake-quant and deployed int8 models; ONNX file sizes; ORT latency."""
    from deepshrink.export import export_onnx
    from deepshrink.metrics import evaluate
    from deepshrink.metrics.evaluation import evaluate_onnx
    from deepshrink.metrics.latency import paired_latency_ms
    from deepshrink.quantization.int8_export import int8_kernel_share, optimized_op_counts

    fp32_path = export_onnx(model, out_dir / "model.fp32.onnx")
    int8_path = result.onnx_path
    metrics: dict[str, Any] = {
        "fp32_top1": evaluate(model, data, limit_batches=limit_batches)["top1"],
        "fake_quant_top1": evaluate(result.model, data, limit_batches=limit_batches)["top1"],
        "ort_int8_top1": evaluate_onnx(int8_path, data, limit_batches=limit_batches)["top1"],
        "fp32_onnx_bytes": fp32_path.stat().st_size,
        "int8_onnx_bytes": int8_path.stat().st_size,
        "quantized_bytes": result.report["quantized_bytes"],
        "int8_kernel_share": int8_kernel_share(optimized_op_counts(int8_path, out_dir / ".ort_optimized.onnx")),
    }
    (out_dir / ".ort_optimized.onnx").unlink(missing_ok=True)
    metrics["int8_file_ratio"] = metrics["int8_onnx_bytes"] / metrics["fp32_onnx_bytes"]
    metrics["top1_gap_deployed_vs_fake_quant"] = metrics["ort_int8_top1"] - metrics["fake_quant_top1"]
    if latency:  # interleaved FP32 / int8 runs: a drifting machine load hits both alike
        metrics["latency_ms"] = {}
        for batch in (1, 64):
            pair = paired_latency_ms({"ort_fp32": fp32_path, "ort_int8": int8_path}, batch, tuple(data.input_size), threads=threads)
            metrics["latency_ms"].update({f"{name}_b{batch}": value for name, value in pair.items()})
        metrics["speedup_b64"] = metrics["latency_ms"]["ort_fp32_b64"] / metrics["latency_ms"]["ort_int8_b64"]
    metrics["report"] = result.report
    return metrics


def register(group: click.Group) -> None:
    group.add_command(quantize)
