"""Quantisation of ResNet-20/32 on the CIFAR-10 JPEG copy, measured as deployed (issue 5).

Baselines: `../shared/weights/cifar10-jpeg/resnet{20,32}.pth` (88.29 / 89.10 %). Rows per model:

- `fp32`: the baseline, FP32 ONNX Runtime (and eager PyTorch) latency;
- `w8a8-ptq-<observer>`: post-training W8A8 (per-channel int8 weights, uint8 activations,
  512 calibration images) with each observer; `w8a8-ptq-mse-cle-bc` adds cross-layer
  equalisation and bias correction. Our scales are exported as ONNX QDQ and run by ONNX Runtime:
  `top1` is the deployed (ORT) accuracy, `fake_quant_top1` the simulated one;
- `w8a8-ort-static`: ONNX Runtime's own quantize_static (the peer), `w8a8-torch-x86`: PyTorch's
  x86 int8 path (torch.ao FX; its latency is eager PyTorch, compare with the fp32 eager numbers);
- `w8a8-qat`, `w4a4-lsq`, `w3a3-lsq`, `w2a2-lsq`: QAT with LSQ (first conv and last linear at
  8 bits; the inputs of residual sums at 8 bits, `residual_bits`, as LSQ and APoT count W/A), `bwn-a8` / `twn-a8`: binary / ternary weights with 8-bit activations. QAT fine-tunes
  the BN-folded fake-quant model on the training engine (AdamW, peak lr 3e-4 - 1e-4 at 8 bits -
  cosine, gradient clipping 2, random crop + flip, batch 128) with KD from the float model;
  `w2a2-lsq-prog` is progressive quantisation: W2A2 QAT started from the `w4a4-lsq` row's trained
  weights (its `train_epochs` counts both), still distilling from the float model;
  `w2a2-lsq-midrise`: W2A2 with the mid-rise weight grid (four levels {-3, -1, 1, 3} s, no zero)
  in place of the narrow one ({-1, 0, 1} s), and `w2a2-lsq-midrise-prog` the same started from
  the `w4a4-lsq` row;
- `cluster16`, `cluster32`: k-means weight sharing, `bytes` = Huffman-coded indices + codebooks
  + the FP32 rest (no int8 file: the graph is the FP32 one);
- `mixed-<budget>`: per-layer weight bits from measured sensitivity, weights within `budget` x
  their FP32 bytes (`packed_bytes`); the ONNX file stores them in int8 containers.

`bytes` is the deployed ONNX file unless said otherwise; `speedup_b1`/`speedup_b64` are FP32 ORT
latency / this row's ORT latency at the same thread count.

    python benchmarks/quant_resnet.py                     # what the lead runs: QAT dominates, about
                                                          # 5 min per epoch of ResNet-20 on 2 cores
    python benchmarks/quant_resnet.py --quick             # smoke run: ResNet-20, tiny budgets, minutes

Writes docs/benchmarks/quant_resnet.{json,md} (--quick: runs/benchmarks/)."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from _common import device_name, machine_name, write_results
from deepshrink.data import load_data, sample_loader, subset
from deepshrink.export import export_onnx
from deepshrink.fileio import read_json, write_json
from deepshrink.metrics import evaluate, latency_ms
from deepshrink.metrics.counting import count_params, macs
from deepshrink.metrics.evaluation import evaluate_onnx
from deepshrink.models import create_model, load_weights
from deepshrink.quantization import (
    QuantizeConfig,
    cluster_weights,
    mixed_precision,
    ort_quantize_static,
    quantize,
    torch_x86_int8,
)
from deepshrink.quantization.cpu import int8_dot_saturates
from deepshrink.metrics.latency import paired_latency_ms
from deepshrink.quantization.progressive import latent_float_model
from deepshrink.quantization.qat import QAT_DEFAULTS
from deepshrink.quantization.sizing import float_bytes

ROOT = Path(__file__).resolve().parents[1]
OBSERVERS = ("minmax", "moving_average", "percentile", "mse", "kl")
QAT_ROWS = {  # name -> config
    "w8a8-qat": {"bits": 8}, "w4a4-lsq": {"bits": 4}, "w3a3-lsq": {"bits": 3}, "w2a2-lsq": {"bits": 2},
    "bwn-a8": {"weight": "bwn", "act_bits": 8}, "twn-a8": {"weight": "twn", "act_bits": 8},
    "w2a2-lsq-prog": {"bits": 2, "start": "w4a4-lsq"},  # progressive: from the W4A4 row's weights
    "w2a2-lsq-midrise": {"bits": 2, "weight": "lsq_midrise"},  # four weight levels {-3, -1, 1, 3} s
    "w2a2-lsq-midrise-prog": {"bits": 2, "weight": "lsq_midrise", "start": "w4a4-lsq"},
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet20,resnet32")
    p.add_argument("--quick", action="store_true", help="ResNet-20 only, 128 calibration images, 1,000 test images (stratified), QAT of 5 batches")
    p.add_argument("--qat-epochs", type=int, default=3, help="QAT epochs at 8 and 4 bits (default 3)")
    p.add_argument("--low-bit-epochs", type=int, default=8, help="QAT epochs at 3 bits and below, bwn, twn (default 8)")
    p.add_argument("--qat-batchnorm", action="store_true",
                   help="QAT rows train each folded layer with its BatchNorm, folded again after (advanced.qat_batchnorm)")
    p.add_argument("--budget", type=float, default=0.15, help="mixed precision: weights within this x FP32 bytes")
    p.add_argument("--threads", type=int, default=2, help="threads for training, evaluation and latency")
    p.add_argument("--rows", default=None, help="comma-separated row names to run when not finished yet (default: all)")
    p.add_argument("--work", default=str(ROOT / "runs" / "quant_resnet"), help="finished rows, reused when re-run")
    p.add_argument("--limit-batches", type=int, default=None, help="cap every QAT epoch at this many batches (default: whole epochs)")
    p.add_argument("--retime", action="store_true",
                   help="re-time the ORT latency of finished rows on this machine (rows trained elsewhere, e.g. on a GPU)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where QAT trains (calibration, evaluation and latency stay on the CPU)")
    p.add_argument("--shared", default=str(ROOT.parent / "shared"))
    p.add_argument("--out", default=None, help="default docs/benchmarks (--quick: runs/benchmarks)")
    return p.parse_args(argv)


class Bench:
    def __init__(self, args: argparse.Namespace, arch: str) -> None:
        shared = Path(args.shared)
        self.args, self.arch = args, arch
        self.work = Path(args.work + ("-quick" if args.quick else ""))  # finished rows, QAT checkpoints
        self.data = load_data(f"imagefolder:{shared / 'datasets' / 'cifar10-jpeg.tar.gz'}")
        if args.quick:  # the test split is ordered by class: a stratified sample, not the first images
            self.data = dataclasses.replace(self.data, test=subset(self.data.test, 1000, seed=0), val=subset(self.data.val, 256, seed=0))
        self.model = create_model(arch)
        load_weights(self.model, shared / "weights" / "cifar10-jpeg" / f"{arch}.pth")
        self.model.eval()
        size = 128 if args.quick else 512
        loader = sample_loader(self.data, 64)
        self.calibration = torch.cat([x for _, x in zip(range(size // 64), (b for b, _ in loader))])
        self.tmp = Path(tempfile.mkdtemp(prefix=f"quant_{arch}_"))
        self.fp32_path = export_onnx(self.model, self.tmp / "fp32.onnx")
        self.params, self.macs = count_params(self.model), macs(self.model)[0]

    def ort_latency(self, path: Path) -> dict[str, float]:
        """This graph's ORT latency, measured interleaved with the FP32 graph's (the machine is
        shared: interleaving keeps the ratio honest); the FP32 numbers of this pairing are kept
        in `paired_fp32` so each row's speedup uses its own pairing."""
        result = {}
        for batch in (1, 64):
            pair = paired_latency_ms({"fp32": self.fp32_path, "this": path}, batch, (3, 32, 32), threads=self.args.threads,
                                     budget_s=1.0 if self.args.quick else 4.0)
            result[f"ort_b{batch}"], result[f"paired_fp32_b{batch}"] = pair["this"], pair["fp32"]
        return result

    def eager_latency(self, model: torch.nn.Module) -> dict[str, float]:
        return {f"eager_b{b}": latency_ms(model, (3, 32, 32), b, threads=self.args.threads).median for b in (1, 64)}

    def row(self, top1: float, *, path: Path | None = None, bytes_: int | None = None, **extra: Any) -> dict:
        """A row without its name (rows() adds it); ORT latency when there is a graph."""
        row = {"top1": top1, "params": self.params, "macs": self.macs,
               "bytes": bytes_ if bytes_ is not None else path.stat().st_size, "latency_ms": {}}
        if path is not None:
            row.update(self.timing(path), graph=str(path))
        row["bytes_ratio"] = row["bytes"] / self.fp32_path.stat().st_size
        return {**row, **extra}

    def timing(self, path: Path) -> dict:
        """latency_ms, speed-ups against the FP32 graph and the FP32 numbers of the same pairing."""
        latency = self.ort_latency(path)
        return {"latency_ms": {k: v for k, v in latency.items() if k.startswith("ort_")},
                "speedup_b1": latency["paired_fp32_b1"] / latency["ort_b1"],
                "speedup_b64": latency["paired_fp32_b64"] / latency["ort_b64"],
                "paired_fp32_ms": {k: v for k, v in latency.items() if k.startswith("paired")}, "timed_on": machine_name()}

    def deployed(self, result: Any) -> dict:
        return self.row(evaluate_onnx(result.onnx_path, self.data)["top1"], path=result.onnx_path,
                        fake_quant_top1=evaluate(result.model, self.data)["top1"],
                        packed_bytes=result.report["quantized_bytes"], int8_onnx=True,
                        reduce_range=result.report["reduce_range"])

    def train_config(self, epochs: int) -> dict:
        quick = {"epochs": 1, "limit_batches": 5} if self.args.quick else {"epochs": epochs, "limit_batches": self.args.limit_batches}
        return {**QAT_DEFAULTS, "num_threads": self.args.threads, "device": self.args.device, "progress": False, **quick}

    def rows(self) -> list[dict]:
        wanted = set(self.args.rows.split(",")) if self.args.rows else None
        runs = [("fp32", self.fp32)]
        runs += [(f"w8a8-ptq-{o}", lambda o=o: self.ptq({"observer": o})) for o in OBSERVERS]
        runs += [("w8a8-ptq-mse-cle-bc", lambda: self.ptq({"observer": "mse", "advanced": {"equalize": True, "bias_correction": True}})),
                 ("w8a8-ort-static", self.ort_static), ("w8a8-torch-x86", self.torch_x86)]
        runs += [(name, lambda c=c, n=name: self.qat(c, n)) for name, c in QAT_ROWS.items()]
        runs += [(f"cluster{k}", lambda k=k: self.cluster(k)) for k in (16, 32)]
        runs += [(f"mixed-{self.args.budget:g}", self.mixed)]
        out = []
        for name, run in runs:  # finished rows come from --work; --rows picks which missing ones run
            path = self.work / f"{self.arch}-{name}.json"
            if path.is_file():
                if self.args.retime and path.with_suffix(".onnx").is_file():
                    write_json(path, read_json(path) | self.timing(path.with_suffix(".onnx")))
                out.append(read_json(path))
            elif wanted is None or name in wanted or name == "fp32":
                print(f"[{self.arch}] {name}", file=sys.stderr, flush=True)
                row = run()
                path.parent.mkdir(parents=True, exist_ok=True)
                if "graph" in row:  # kept beside the record, so the row can be re-timed elsewhere
                    shutil.copyfile(row.pop("graph"), path.with_suffix(".onnx"))
                write_json(path, {"name": f"{self.arch}-{name}", **row, "train_device": device_name(),
                                  "calibration_sample": f"{len(self.calibration)} shuffled training images"})
                out.append(read_json(path))  # the JSON round trip makes fresh and cached rows alike
        return out

    def fp32(self) -> dict:
        top1 = evaluate(self.model, self.data)["top1"]
        return self.row(top1, path=self.fp32_path, eager_latency_ms=self.eager_latency(self.model),
                        fp32_state_bytes=float_bytes(self.model))

    def ptq(self, config: dict) -> dict:
        result = quantize(self.model, self.calibration, config={**config, "calibration_size": len(self.calibration)},
                          onnx_path=self.tmp / "ptq.onnx")
        return self.deployed(result)

    def qat(self, config: dict, name: str) -> dict:
        """QAT checkpoints every epoch in WORK/ARCH-NAME.train, so a killed row resumes mid-way."""
        result, epochs = self.qat_result(config, name, onnx_path=self.tmp / "qat.onnx")
        return self.deployed(result) | {"train_epochs": epochs} | ({"start": config["start"]} if "start" in config else {})

    def qat_result(self, config: dict, name: str, onnx_path: Path | None = None) -> tuple[Any, int]:
        """(quantize's result, QAT epochs in all). A row with "start" first rebuilds that row (its
        finished checkpoint makes this a resume with nothing left to train) and starts from its
        latent weights, distilling from the float model: progressive quantisation."""
        config = dict(config)
        start, teacher, epochs_before = self.model, None, 0
        if "start" in config:
            source = config.pop("start")
            before, epochs_before = self.qat_result(QAT_ROWS[source], source)
            start, teacher = latent_float_model(before.model, self.model), self.model
        low = config.get("bits", 2) <= 3 or "weight" in config
        train = self.train_config(self.args.low_bit_epochs if low else self.args.qat_epochs)
        if config.get("bits") == 8:  # an 8-bit grid needs only a nudge: 3e-4 cost 0.2 points more in 40 steps
            train["lr"] = 1e-4
        advanced = {"distill_weight": 1.0, "qat_batchnorm": self.args.qat_batchnorm}
        options = {"method": "qat", "calibration_size": len(self.calibration), "advanced": advanced, "train": train, **config}
        result = quantize(start, self.data, config=options, onnx_path=onnx_path, teacher=teacher,
                          train_dir=self.work / f"{self.arch}-{name}.train", resume=True)
        return result, epochs_before + train["epochs"]

    def ort_static(self, reduce_range: bool | None = None) -> dict:
        path = ort_quantize_static(self.model, list(self.calibration.split(64)), self.tmp / "ort_static.onnx",
                                   reduce_range=reduce_range)
        return self.row(evaluate_onnx(path, self.data)["top1"], path=path, int8_onnx=True,
                        reduce_range=int8_dot_saturates() if reduce_range is None else reduce_range)

    def torch_x86(self) -> dict:
        int8 = torch_x86_int8(self.model, list(self.calibration.split(64)))
        with tempfile.NamedTemporaryFile(suffix=".pt") as handle:
            torch.save(int8.state_dict(), handle.name)
            size = Path(handle.name).stat().st_size
        fp32, ours = self.eager_latency(self.model), self.eager_latency(int8)  # back to back
        return self.row(evaluate(int8, self.data)["top1"], bytes_=size, eager_latency_ms=ours, paired_fp32_eager_ms=fp32,
                        eager_speedup_b1=fp32["eager_b1"] / ours["eager_b1"], eager_speedup_b64=fp32["eager_b64"] / ours["eager_b64"],
                        note="latency: eager PyTorch int8 (x86 backend) vs eager FP32")

    def cluster(self, clusters: int) -> dict:
        result = cluster_weights(self.model, clusters)
        rest = float_bytes(self.model) - result.report["fp32_bytes"]
        return self.row(evaluate(result.model, self.data)["top1"],
                        bytes_=result.report["huffman_bytes"] + rest, fixed_length_bytes=result.report["fixed_bytes"] + rest)

    def mixed(self) -> dict:
        result = mixed_precision(self.model, self.calibration, budget=self.args.budget, candidates=(8, 6, 4, 3, 2),
                                 onnx_path=self.tmp / "mixed.onnx")
        return self.deployed(result) | {"layer_bits": result.report["layer_bits"], "weight_bytes": result.report["weight_bytes"]}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    models = ["resnet20"] if args.quick else args.models.split(",")
    rows = [row for arch in models for row in Bench(args, arch).rows()]
    budget = {"threads": args.threads, "calibration_images": 128 if args.quick else 512,
              "qat_epochs": args.qat_epochs, "low_bit_epochs": args.low_bit_epochs, "quick": args.quick,
              "qat_batchnorm": args.qat_batchnorm, "residual_bits": QuantizeConfig().residual_bits,
              "qat_batches_per_epoch": 5 if args.quick else args.limit_batches, "qat_batch_size": QAT_DEFAULTS.get("batch_size"),
              "test_images": 1000 if args.quick else 10000}
    write_results("quant_resnet", rows, args, argv, budget=budget,
                  notes="top1: deployed ONNX Runtime accuracy (fake_quant_top1: simulated). "
                        "speedups: FP32 ORT latency / row latency, same threads.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
