"""Detector compression on Highway (issue 9): FCOS baseline -> pruned to 2x fewer MACs -> + KD
from the baseline -> + int8, each scored by mAP on the Highway test split.

Data: Highway Object Detection v40 (Roboflow Universe, universitas-tidar), CC BY 4.0, resized to
320 px (`../shared/datasets/highway-det-320.tar.gz`); train on its train split, mAP per epoch on
valid, rows scored on test (246 images, 5 classes). Rows:

- `baseline`: `--model` (default fcos_resnet, width 0.5) trained from scratch for `--epochs`
  (AdamW, cosine, 1 warm-up epoch, box-aware augmentation, EMA weights);
- `pruned`: `deepshrink.prune` (FPGM, verified surgery through neck and shared heads) to a MACs
  budget (`--macs-keep`, default 0.5 = 2x fewer), kept channels in multiples of `--round-to` (16
  matches ONNX Runtime's AVX-512 channel block), fine-tuned for `--finetune-epochs`;
- `pruned+kd`: the same pruned network fine-tuned as long with neck-feature imitation and
  class-logit KD from the baseline (`distill_detector`);
- `pruned+kd+int8`: `deepshrink.quantize` W8A8 PTQ of `pruned+kd` with the three prediction
  convolutions kept in float (the heads' sensitive layers), plus the layers the latency-aware
  fallback measures slower in int8 than in float on this CPU (`advanced.latency_fallback`; off
  with --no-latency-fallback), evaluated as deployed: the int8 ONNX graph on
  ONNX Runtime, then decode + NMS.

Every row: map50, map50_95 (percent, COCO evaluation via pycocotools), params, MACs at 320x320,
`bytes` of the deployed ONNX file, ONNX Runtime latency at batch 1 without NMS (`ort_b1`, measured
interleaved with the baseline graph) and with decode + NMS on real test images (`ort_b1_nms`),
and the ratios to the baseline. The issue's goal: at 2x fewer MACs plus int8, lose <= 1.0 point
mAP@0.5 and run >= 2.5x faster on ONNX Runtime.

    # the main table (AVX-512 VNNI CPU, 1 thread, about 85 min; time it on a quiet machine):
    python benchmarks/detector_highway.py --epochs 32 --finetune-epochs 32 --kd-feature-weight 0 --round-to 16 --threads 1
    python benchmarks/detector_highway.py --epochs 60      # the long schedule (a GPU when lent)
    python benchmarks/detector_highway.py --quick          # smoke run: minutes on 2 CPU cores

Writes docs/benchmarks/detector_highway.{json,md} (--quick: runs/benchmarks/)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import apply_threads, write_results
from deepshrink.data import BatchLoader, sample_loader
from deepshrink.detection import (
    distill_detector,
    evaluate_detector,
    evaluate_onnx_detector,
    export_detector,
    load_detection,
    postprocess,
    train_detector,
)
from deepshrink.export import ort_session, resolve_threads
from deepshrink.metrics import count_params, macs, time_callable
from deepshrink.models import create_model
from deepshrink.pruning import prune
from deepshrink.quantization import quantize
from deepshrink.threads import torch_threads
from deepshrink.metrics.latency import paired_latency_ms

ROOT = Path(__file__).resolve().parents[1]
NAME = "detector_highway"
HEAD_PREDICTIONS = ["head.cls_pred", "head.box_pred", "head.ctr_pred"]  # kept in float by int8 PTQ
ATTRIBUTION = ("Data: Highway Object Detection v40 by universitas-tidar on Roboflow Universe "
               "(https://universe.roboflow.com/universitas-tidar/highway-object-detection), CC BY 4.0; "
               "resized 640 -> 320 px, 10 duplicate images removed.")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=60, help="baseline training epochs (default 60)")
    p.add_argument("--finetune-epochs", type=int, default=None, help="epochs of the pruned rows (default epochs / 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: subsets, 1 epoch of 3 batches per row")
    p.add_argument("--model", default="fcos_resnet", choices=["fcos_resnet", "fcos_mobilenet_v2"])
    p.add_argument("--width-mult", type=float, default=0.5)
    p.add_argument("--macs-keep", type=float, default=0.5, help="fraction of the baseline's MACs to keep (0.5 = 2x)")
    p.add_argument("--round-to", type=int, default=8,
                   help="kept channels per group rounded to a multiple of this (other values: rows in their own folders)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--adapter-images", type=int, default=64,
                   help="training images the KD row's imitation adapters are least-squares fit on (0: random start)")
    p.add_argument("--kd-feature-weight", type=float, default=1.0, help="the KD row's neck-imitation weight")
    p.add_argument("--kd-logit-weight", type=float, default=1.0, help="the KD row's class-logit KD weight")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (fine-tuning: half)")
    p.add_argument("--observer", default="percentile", help="PTQ activation observer")
    p.add_argument("--baseline-only", action="store_true",
                   help="train and measure the baseline row alone (e.g. a longer schedule to compare against)")
    p.add_argument("--latency-fallback", action=argparse.BooleanOptionalAction, default=True,
                   help="int8 row: leave in float the convolutions measured slower in int8 on this CPU")
    p.add_argument("--shared", default=str(ROOT.parent / "shared"), help="the shared data folder")
    p.add_argument("--out", default=None, help="output folder (default docs/benchmarks, --quick: runs/benchmarks)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=None, help="PyTorch and ONNX Runtime threads (default: all cores)")
    p.add_argument("--work", default=None, help="per-row checkpoints, resumed when re-run (default runs/detector_highway)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        data = load_detection(f"yolo:{Path(args.shared) / 'datasets' / 'highway-det-320.tar.gz'}", image_size=320)
        if args.quick:  # seeded subsets keep the smoke run short
            rng = np.random.default_rng(args.seed)
            pick = lambda s, n: s.take(np.sort(rng.permutation(len(s))[:n]))  # noqa: E731
            data = dataclasses.replace(data, train=pick(data.train, 96), val=pick(data.val, 16), test=pick(data.test, 32))
        self.data = data
        self.size = data.input_size
        self.tmp = Path(tempfile.mkdtemp(prefix="detector_highway_"))
        self.threads = resolve_threads(args.threads)
        loader = BatchLoader(data.test, 1, train=False, mean=data.mean, std=data.std)
        self.nms_images = [x for _, (x, _) in zip(range(8), loader)]  # real scenes: NMS cost depends on them
        self.baseline_onnx: Path | None = None
        self.work = Path(args.work or ROOT / "runs" / (NAME + ("-quick" if args.quick else "")))

    def fit(self, row: str, train, *model_args, config: dict):
        """One row's training, checkpointed every epoch under the work folder: an interrupted
        benchmark resumes each row where it stopped, and a finished row is not trained again."""
        return train(*model_args, self.data, config, options=self.options(), out_dir=self.work / row,
                     resume=True).model

    def train_config(self, epochs: int, lr: float) -> dict:
        quick = {"epochs": 1, "limit_batches": 3} if self.args.quick else {"epochs": epochs}
        return {"batch_size": 8 if self.args.quick else self.args.batch_size, "optimizer": "adamw", "lr": lr,
                "weight_decay": 0.05, "schedule": "cosine", "warmup_epochs": min(1.0, quick["epochs"]),
                "grad_clip": 10.0, "seed": self.args.seed, "device": self.args.device,
                "progress": sys.stdout.isatty(), **quick}

    def options(self) -> dict:
        return {"eval_limit": 16 if self.args.quick else None}

    def ort_latency(self, path: Path) -> dict[str, float]:
        """Batch-1 latency without NMS (interleaved with the baseline graph, so the ratio survives a
        shared machine's drift) and with decode + NMS on real test images."""
        pair = paired_latency_ms({"baseline": self.baseline_onnx, "this": path}, 1, self.size, threads=self.threads,
                                 budget_s=1.0 if self.args.quick else 5.0)
        session = ort_session(path, self.threads)
        name = session.get_inputs()[0].name
        feeds = [x.numpy() for x in self.nms_images]
        hw = (self.size[1], self.size[2])

        def run_all() -> None:
            for x in feeds:
                postprocess(session.run(None, {name: x})[0], hw)

        with_nms = time_callable(run_all, threads=self.threads, budget_s=1.0 if self.args.quick else 5.0).median
        return {"ort_b1": round(pair["this"], 4), "ort_b1_nms": round(with_nms / len(feeds), 4),
                "paired_baseline_b1": round(pair["baseline"], 4)}

    def row(self, name: str, model: torch.nn.Module, path: Path, result, **extra) -> dict:
        print(f"{name}: mAP@0.5 {result.map50:.2f}  mAP@0.5:0.95 {result.map50_95:.2f}", file=sys.stderr, flush=True)
        return {"name": name, "map50": round(result.map50, 3), "map50_95": round(result.map50_95, 3),
                "params": count_params(model), "macs": macs(model, self.size)[0], "bytes": path.stat().st_size,
                "latency_ms": self.ort_latency(path), "per_class_ap50": {k: v["ap50"] for k, v in result.per_class.items()},
                **extra}

    def float_row(self, name: str, model: torch.nn.Module, seconds: float, **extra) -> dict:
        path = export_detector(model, self.tmp / f"{name}.onnx", self.size)
        if self.baseline_onnx is None:
            self.baseline_onnx = path
        result = evaluate_detector(model, self.data, split="test")
        return self.row(name, model, path, result, train_seconds=round(seconds, 1), **extra)

    def rounding_suffix(self) -> str:
        """Another rounding prunes another network: its rows train in their own folders."""
        return "" if self.args.round_to == 8 else f"_r{self.args.round_to}"

    def pruned_row(self, base: torch.nn.Module, epochs: int):
        """(prune's result, the pruned network fine-tuned for `epochs`, resumed or reused from the
        work folder)."""
        example = torch.randn(2, 3, 160, 160)  # MACs ratios do not depend on the resolution
        config = {"criterion": "fpgm", "protect_ends": False, "budget": {"metric": "macs", "keep": self.args.macs_keep},
                  "round_to": self.args.round_to}
        pruned = prune(base, example, config=config)
        tuned = self.fit(f"pruned{self.rounding_suffix()}", train_detector, copy.deepcopy(pruned.model),
                         config=self.train_config(epochs, self.args.lr / 2))
        return pruned, tuned

    def kd_row(self, pruned: torch.nn.Module, base: torch.nn.Module, epochs: int) -> torch.nn.Module:
        """The pruned network distilled from `base` for `epochs` (resumed or reused from the work folder)."""
        args = self.args
        kd_train = functools.partial(distill_detector, adapter_images=args.adapter_images,
                                     feature_weight=args.kd_feature_weight, logit_weight=args.kd_logit_weight)
        weights = (args.kd_feature_weight, args.kd_logit_weight)
        # other KD weights train in their own folder, beside the same baseline and pruned rows
        kd_dir = ("pruned+kd" if weights == (1.0, 1.0) else f"pruned+kd_f{weights[0]:g}_l{weights[1]:g}") + self.rounding_suffix()
        return self.fit(kd_dir, kd_train, copy.deepcopy(pruned), base, config=self.train_config(epochs, args.lr / 2))

    def int8(self, model: torch.nn.Module, keep_float: list[str], name: str = "int8"):
        """W8A8 PTQ of `model` with `keep_float` (and the latency fallback unless switched off),
        exported to int8 ONNX."""
        calibration = torch.cat([x for _, (x, _) in zip(range(2 if self.args.quick else 16), sample_loader(self.data, 16))])
        config = {"observer": self.args.observer, "calibration_size": len(calibration), "keep_float": keep_float,
                  "advanced": {"latency_fallback": self.args.latency_fallback}}
        with torch_threads(self.threads):  # the fallback times kernels at the thread count latency is measured at
            return quantize(model, calibration, config=config, onnx_path=self.tmp / f"{name}.onnx", input_size=self.size)

    def run(self) -> list[dict]:
        args = self.args
        epochs = 1 if args.quick else args.epochs
        ft_epochs = 1 if args.quick else (args.finetune_epochs or max(1, args.epochs // 3))
        torch.manual_seed(args.seed)
        base = create_model(args.model, num_classes=self.data.num_classes, width_mult=args.width_mult)
        start = time.perf_counter()
        base = self.fit("baseline", train_detector, base, config=self.train_config(args.epochs, args.lr))
        rows = [self.float_row("baseline", base, time.perf_counter() - start, epochs=epochs)]
        if args.baseline_only:
            return _ratios(rows)

        start = time.perf_counter()
        pruned, tuned = self.pruned_row(base, ft_epochs)
        rows.append(self.float_row("pruned", tuned, time.perf_counter() - start, epochs=ft_epochs,
                                   prune_ratio=round(pruned.report["ratio"], 4), round_to=args.round_to))
        start = time.perf_counter()
        kd = self.kd_row(pruned.model, base, ft_epochs)
        rows.append(self.float_row("pruned+kd", kd, time.perf_counter() - start, epochs=ft_epochs))

        q = self.int8(kd, HEAD_PREDICTIONS)
        deployed = evaluate_onnx_detector(q.onnx_path, self.data, split="test", threads=self.threads)
        fallback = {"latency_fallback": q.report["latency_fallback"]} if args.latency_fallback else {}
        rows.append(self.row("pruned+kd+int8", kd, q.onnx_path, deployed, float_layers=q.report["float_layers"], **fallback,
                             fake_quant_map50=round(evaluate_detector(q.model, self.data, split="test").map50, 3)))
        return _ratios(rows)


def _ratios(rows: list[dict]) -> list[dict]:
    base = rows[0]
    for row in rows:
        row["macs_ratio"] = round(row["macs"] / base["macs"], 4)
        row["map50_change"] = round(row["map50"] - base["map50"], 3)
        row["speedup_ort_b1"] = round(row["latency_ms"]["paired_baseline_b1"] / row["latency_ms"]["ort_b1"], 3)
        row["speedup_ort_b1_nms"] = round(base["latency_ms"]["ort_b1_nms"] / row["latency_ms"]["ort_b1_nms"], 3)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    apply_threads(args.threads)
    rows = Bench(args).run()
    budget = {"model": f"{args.model} x{args.width_mult}", "input": "3x320x320", "quick": args.quick,
              "baseline_epochs": 1 if args.quick else args.epochs,
              "finetune_epochs": 1 if args.quick else (args.finetune_epochs or max(1, args.epochs // 3)),
              "macs_keep": args.macs_keep, "round_to": args.round_to, "latency_fallback": args.latency_fallback,
              "kd_adapter_images": args.adapter_images, "kd_feature_weight": args.kd_feature_weight,
              "kd_logit_weight": args.kd_logit_weight, "batches_per_epoch": 3 if args.quick else "all"}
    notes = (ATTRIBUTION + " `bytes` is the deployed ONNX file; `ort_b1` is paired with the baseline graph "
             "(`speedup_ort_b1` uses that pairing); `ort_b1_nms` adds decode + NMS on 8 real test images.")
    write_results(NAME, rows, args, argv, budget=budget, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
