"""Does the deployed int8 model compute what its simulation did? W8A8 PTQ of the ResNet-20/32
JPEG baselines with 8-bit weights on the full int8 grid and on the 7-bit grid (`reduce_range`),
ours and ONNX Runtime's quantize_static, on this machine's CPU.

ONNX Runtime's x86 int8 kernels on CPUs without VNNI add pairs of uint8 x int8 products in
saturating 16-bit lanes (deepshrink/quantization/cpu.py): there the full grid's deployed top-1
falls below the fake-quant one; 7-bit weights cannot overflow. On a VNNI CPU both grids deploy as
simulated and the rows show what the seventh bit costs. `reduce_range` in each row says which grid
it used; DeepShrink's default picks the 7-bit grid exactly where the CPU lacks VNNI.

    python benchmarks/int8_saturation.py --threads 1     # about 3 minutes per model on 2 cores

Writes docs/benchmarks/int8_saturation.{json,md}."""

from __future__ import annotations

import argparse
import sys

import torch

from _common import add_io_args, machine_name, write_results
from deepshrink.metrics.benchmark import machine_info
from quant_resnet import Bench

GRIDS = {"full-range": False, "reduced-range": True}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet20,resnet32")
    p.add_argument("--observer", default="mse", help="activation observer of our PTQ rows (default mse)")
    p.add_argument("--threads", type=int, default=1, help="threads for evaluation and latency (default 1)")
    add_io_args(p)
    args = p.parse_args(argv)
    args.quick = False  # what Bench reads
    return args


def rows_for(args: argparse.Namespace, arch: str) -> list[dict]:
    bench = Bench(args, arch)
    rows = [{"name": f"{arch}-fp32", **bench.fp32()}]
    for grid, reduce_range in GRIDS.items():
        ours = bench.ptq({"observer": args.observer, "advanced": {"reduce_range": reduce_range}})
        rows.append({"name": f"{arch}-w8a8-ptq-{args.observer}-{grid}", **ours,
                     "deployed_minus_simulated": round(ours["top1"] - ours["fake_quant_top1"], 2)})
        rows.append({"name": f"{arch}-w8a8-ort-static-{grid}", **bench.ort_static(reduce_range)})
    for row in rows:
        row.pop("graph", None)
        row["timed_on"] = machine_name()
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    rows = [row for arch in args.models.split(",") for row in rows_for(args, arch)]
    info = machine_info()
    budget = {"calibration_images": 512, "test_images": 10000, "threads": args.threads,
              "cpu_simd": info["simd"], "cpu_int8_vnni": info["int8_vnni"]}
    write_results("int8_saturation", rows, args, argv, budget=budget,
                  notes="top1: deployed ONNX Runtime accuracy; fake_quant_top1: the simulation; "
                        "deployed_minus_simulated: their difference in points. speedups: FP32 ORT / row, same threads.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
