"""Command-line pieces every CIFAR benchmark script shares."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# --quick searches: latency timed briefly, few whole models (smoke runs, not measurements)
QUICK_SEARCH_LATENCY = {"entry_seconds": 0.02, "model_seconds": 0.2, "calibration_models": 3, "verify_top": 2}


def add_io_args(parser: argparse.ArgumentParser) -> None:
    """--shared (data and weights folder) and --out (where the JSON/MD tables go)."""
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="the shared data and weights folder")
    parser.add_argument("--out", default=None, help="output folder (default docs/benchmarks, --quick: runs/benchmarks)")


def row_names(text: str, known: tuple[str, ...]) -> list[str]:
    """The comma-separated --rows value, checked against the rows the script knows."""
    rows = [r.strip() for r in text.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(known))
    if unknown:
        raise SystemExit(f"--rows: unknown {unknown}; choose from {', '.join(known)}")
    return rows


def add_budget_args(parser: argparse.ArgumentParser, *, threads: bool = True) -> None:
    """--limit-batches (cap each fine-tuning epoch: a stated CPU budget below whole epochs) and
    --threads (PyTorch and ONNX Runtime threads, so two benchmarks can share a machine)."""
    parser.add_argument("--limit-batches", type=int, default=None,
                        help="cap every fine-tuning epoch at this many batches (default: whole epochs)")
    if threads:
        parser.add_argument("--threads", type=int, default=None, help="PyTorch and ONNX Runtime threads (default: all cores)")


def apply_threads(threads: int | None) -> None:
    """Pin PyTorch's intra-op threads; metrics.profile then measures latency at the same count."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def write_results(name: str, rows: list[dict], args: argparse.Namespace, argv: list[str] | None, *,
                  budget: dict, notes: str | None = None) -> None:
    """Write NAME.json/.md (docs/benchmarks, or runs/benchmarks for --quick, or --out) with the
    command line that produced them."""
    import shlex
    import sys

    from deepshrink.metrics.benchmark import write_benchmark

    out = Path(args.out) if args.out else ROOT / ("runs/benchmarks" if args.quick else "docs/benchmarks")
    command = f"python benchmarks/{Path(sys.argv[0]).name} " + shlex.join(sys.argv[1:] if argv is None else argv)
    paths = write_benchmark(name, rows, command=command.strip(), budget=budget, out_dir=out, notes=notes)
    print("wrote", *paths, flush=True)


def interleaved_latency(graphs: dict[str, Path], input_size, threads: int | None, *, budget_s: float = 5.0,
                        reference: str = "baseline") -> dict[str, dict[str, float]]:
    """ONNX Runtime latency of every graph at batch 1 and 64, measured in interleaved rounds in one
    session at the end of a run (rows trained hours apart on a shared machine would otherwise be
    timed under different loads); adds speed-ups against `reference`."""
    from deepshrink.metrics.latency import paired_latency_ms

    by_batch = {b: paired_latency_ms(graphs, b, input_size, threads=threads, budget_s=budget_s) for b in (1, 64)}
    return {name: {"latency_ms": {f"ort_b{b}": round(ms[name], 4) for b, ms in by_batch.items()},
                   "speedup_b1": round(by_batch[1][reference] / by_batch[1][name], 3),
                   "speedup_b64": round(by_batch[64][reference] / by_batch[64][name], 3)}
            for name in graphs}


class RowCache:
    """Finished rows of a long benchmark on disk (the row's record as JSON and its ONNX graph), so an
    interrupted run resumes after the last finished row."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def onnx(self, name: str) -> Path:
        return self.folder / f"{name}.onnx"

    def train_dir(self, name: str) -> Path:
        """Where the row's training checkpoints every epoch, so a killed row resumes mid-way."""
        return self.folder / f"{name}.train"

    def get(self, name: str) -> dict | None:
        from deepshrink.fileio import read_json

        record = self.folder / f"{name}.json"
        return read_json(record) if record.is_file() and self.onnx(name).is_file() else None

    def put(self, name: str, record: dict, model=None, *, onnx: Path | None = None) -> None:
        """Store the row's graph (`model` exported to ONNX, or the ready `onnx` file) and record."""
        import shutil

        from deepshrink.export import export_onnx
        from deepshrink.fileio import write_json

        if onnx is not None:
            if Path(onnx).resolve() != self.onnx(name).resolve():
                shutil.copyfile(onnx, self.onnx(name))
        else:
            export_onnx(model, self.onnx(name))
        write_json(self.folder / f"{name}.json", record)  # last: its presence marks the row finished

    def time_rows(self, records: list[dict], input_size, threads: int | None, *, quick: bool) -> None:
        """In place: every record's ORT latency and speed-ups from one interleaved session over
        the cached graphs (records[0] is the reference)."""
        from deepshrink.export.runtime import resolve_threads

        timed = interleaved_latency({r["name"]: self.onnx(r["name"]) for r in records}, input_size, threads,
                                    budget_s=1.0 if quick else 5.0, reference=records[0]["name"])
        used = resolve_threads(threads)  # replaces the count a cached row was first timed with
        for record in records:
            record.setdefault("latency_ms", {}).update(timed[record["name"]]["latency_ms"])
            record.update({k: v for k, v in timed[record["name"]].items() if k != "latency_ms"}, timed_on=machine_name(),
                          threads=used)


def cifar10_jpeg(args: argparse.Namespace):
    """(data, scored): the CIFAR-10 JPEG copy in --shared, and the bundle rows are scored on (with
    --quick, 500 random test images: the test split is sorted by class)."""
    import dataclasses

    from deepshrink.data import load_data, subset

    data = load_data(f"imagefolder:{Path(args.shared) / 'datasets' / 'cifar10-jpeg.tar.gz'}", seed=args.seed)
    scored = dataclasses.replace(data, test=subset(data.test, 500, seed=args.seed)) if args.quick else data
    return data, scored


def jpeg_baseline(arch: str, data, args: argparse.Namespace):
    """A zoo ResNet with its baseline fine-tuned on the JPEG copy (../shared/weights/cifar10-jpeg), in eval mode."""
    from deepshrink.models import create_model, load_weights

    model = create_model(arch, num_classes=data.num_classes, input_size=data.input_size, mean=data.mean, std=data.std)
    return load_weights(model, Path(args.shared) / "weights" / "cifar10-jpeg" / f"{arch}.pth").eval()


def cached_record(folder: Path, name: str, compute) -> dict:
    """`compute()`'s JSON record, stored as folder/NAME.json and reused by a re-run (rows whose
    graph is not needed later; see RowCache for those that are)."""
    from deepshrink.fileio import read_json, write_json

    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        write_json(path, compute())
    return read_json(path)


def device_name() -> str:
    """Where this process trains: the GPU's name when CUDA is available, else the CPU's model
    (rows trained on a lent GPU and re-timed here say so)."""
    import torch

    from deepshrink.metrics.benchmark import machine_info

    return f"cuda: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else f"cpu: {machine_info()['cpu']}"


def machine_name() -> str:
    """The CPU model and core count latency was measured on."""
    from deepshrink.metrics.benchmark import machine_info

    info = machine_info()
    vnni = "VNNI" if info["int8_vnni"] else "no VNNI"
    return f"{info['cpu']} ({info['simd']}, {vnni}, {info['cores_available']} cores)"
