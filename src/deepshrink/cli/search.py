"""`deepshrink search`: evolutionary search of per-layer pruning ratios under a MACs, parameter,
bytes or measured-latency budget. Writes to --out: plan.json (PruneConfig fields, replayable with
`deepshrink prune --config OUT/plan.json`), candidates.json, pareto.png, the pruned (and fine-tuned)
model directory, metrics.json and the resolved search_config.json. Re-running the same command
resumes an interrupted search from OUT/search_state.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deepshrink.cli.common import build_model, console, data_option, model_options, print_kv_table, read_options_file
from deepshrink.errors import ConfigError


def _config(options: dict[str, Any]):
    """SearchConfig from --config (YAML/JSON), with the flags that were given on top."""
    from deepshrink.nas.search import SearchConfig

    base = read_options_file(options["config_path"], "search")
    latency = dict(base.get("latency") or {})
    latency.update({k: v for k, v in (("runtime", options["runtime"]), ("batch_size", options["latency_batch"]),
                                      ("threads", options["threads"])) if v is not None})
    finetune = None
    if options["finetune_epochs"]:
        finetune = {"epochs": options["finetune_epochs"], "lr": options["lr"],
                    "limit_batches": options["limit_batches"]}
    overrides = {
        "budget": options["target"], "limits": list(options["also"]) or None,
        "generations": options["generations"], "population": options["population"],
        "seed": options["seed"], "round_to": options["round_to"], "latency": latency or None,
        "ratios": _ratios(options["ratios"]), "finetune": finetune,
        "progress": False if options["no_progress"] else None,
        "protect_ends": False if options["no_protect_ends"] else None,
    }
    return SearchConfig.coerce(base, **overrides)


def _ratios(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--ratios '{text}': expected comma-separated fractions, e.g. 0,0.2,0.4,0.6") from None


@click.command("search")
@model_options
@data_option()
@click.option("--target", default=None,
              help="Budget: macs:0.5 | params:0.5 | bytes:0.5 | latency:2x (default macs:0.5).")
@click.option("--also", multiple=True,
              help="A further limit every candidate must meet (macs:0.5 | params:0.5 | bytes:0.5), e.g. --target "
                   "latency:1.6x --also macs:0.5; repeat for several.")
@click.option("--generations", type=int, default=None, help="Generations after the initial population (default 10).")
@click.option("--population", type=int, default=None, help="Candidates per generation (default 16).")
@click.option("--ratios", default=None, help="Pruning ratios a group may take (default 0,0.1,...,0.8).")
@click.option("--round-to", type=int, default=None, help="Kept channels rounded to this multiple (default 8).")
@click.option("--runtime", default=None,
              help="Latency runtime: ort (CPU, default), ort-cuda, ort-tensorrt, ort-openvino.")
@click.option("--latency-batch", type=int, default=None, help="Batch size latency is measured at (default 1).")
@click.option("--threads", type=int, default=None, help="Runtime threads for latency (default 1).")
@click.option("--no-protect-ends", is_flag=True, help="Also search the first convolution and the classifier's input.")
@click.option("--seed", type=int, default=None)
@click.option("--finetune-epochs", type=int, default=0, show_default=True, help="Fine-tune the chosen model.")
@click.option("--lr", type=float, default=0.01, show_default=True, help="Fine-tuning learning rate.")
@click.option("--limit-batches", type=int, default=None, help="Cap fine-tuning and evaluation batches (smoke runs).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="YAML/JSON with SearchConfig fields; flags override it.")
@click.option("--fresh", is_flag=True, help="Ignore a saved search state in --out and start over.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory.")
def search_command(model_name, weights, data_spec, fresh, out, **options) -> None:
    """Search per-layer pruning ratios under a budget, then prune (and fine-tune) the best.

    Example: deepshrink search --model resnet56 --weights ../shared/weights/cifar10-jpeg/resnet56.pth
    --data imagefolder:../shared/datasets/cifar10-jpeg.tar.gz --target latency:2x --out runs/r56-search
    """
    from deepshrink.data import load_data
    from deepshrink.fileio import write_json
    from deepshrink.metrics import evaluate
    from deepshrink.models import save_model
    from deepshrink.nas.search import search

    if options["finetune_epochs"] < 0:
        raise ConfigError(f"--finetune-epochs must be >= 0, got {options['finetune_epochs']}")
    config = _config(options)
    out_dir = Path(out)
    data = load_data(data_spec)
    model = build_model(model_name, weights, data)
    write_json(out_dir / "search_config.json", config.model_dump(mode="json"))
    result = search(model, data, config, out_dir=out_dir, resume=not fresh)
    save_model(result.model, out_dir)
    limit = options["limit_batches"]
    metrics = {
        "budget": result.budget, "plan": result.plan, "meets_target": result.chosen["meets_target"],
        "chosen": {k: v for k, v in result.chosen.items() if k != "ratios"},
        "test": {"before": evaluate(model, data, limit_batches=limit),
                 "after": evaluate(result.model, data, limit_batches=limit)},
        "latency": result.latency,
    }
    write_json(out_dir / "metrics.json", metrics)
    rows = {
        "budget": " and ".join(b.describe() for b in (result.config.budget, *result.config.limits)),
        "candidates": len(result.candidates),
        "MACs": f"{result.unpruned['macs']:,.0f} -> {result.chosen['macs']:,.0f}",
        "params": f"{result.unpruned['params']:,.0f} -> {result.chosen['params']:,.0f}",
        "test top-1": f"{metrics['test']['before']['top1']:.2f} -> {metrics['test']['after']['top1']:.2f} %",
    }
    if result.latency is not None:
        rows["latency (ms)"] = (f"{result.latency['baseline_ms']:.3f} -> {result.chosen['latency_measured']:.3f} "
                                f"(target {result.latency['target_ms']:.3f})")
        error = result.latency["check_error"]
        rows["table error"] = f"{100 * error['mean']:.1f} % mean, {100 * error['max']:.1f} % max on {error['n']} checks"
    print_kv_table("search", rows)
    console.print(f"wrote {out_dir}")


def register(group: click.Group) -> None:
    group.add_command(search_command)
