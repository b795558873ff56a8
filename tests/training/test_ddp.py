"""Two-process CPU DDP (gloo, launched by torchrun) matches one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from _train_script import KILL_ENV, train_once

from deepshrink.fileio import read_json

SCRIPT = Path(__file__).with_name("_train_script.py")


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_two_process_ddp_matches_single_process(tmp_path):
    single = train_once(tmp_path / "single", epochs=2)  # BN-free model, no augmentation, batch 16
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(KILL_ENV, None)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
              str(SCRIPT), str(tmp_path / "ddp"), "--epochs", "2"]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]

    weights = torch.load(tmp_path / "ddp" / "final.pt", weights_only=True)
    for name, expected in single.model.state_dict().items():
        torch.testing.assert_close(weights[name], expected, rtol=1e-4, atol=1e-6, msg=f"{name} differs")
    # the weights did move, so the match is not trivial
    assert any(not torch.equal(weights[name], t) for name, t in _initial().items())

    history = read_json(tmp_path / "ddp" / "result.json")
    assert [r["step"] for r in history] == [r["step"] for r in single.history] == [4, 8]  # per-rank batch 8
    for ddp_record, one_record in zip(history, single.history):
        assert ddp_record["val_top1"] == one_record["val_top1"]  # summed over both ranks' shards
        assert ddp_record["train_loss"] == pytest.approx(one_record["train_loss"], rel=1e-4)
        assert ddp_record["val_loss"] == pytest.approx(one_record["val_loss"], rel=1e-4)
    assert read_json(tmp_path / "ddp" / "train_config.json")["world_size"] == 2


def _initial() -> dict[str, torch.Tensor]:
    from _training_fixtures import tiny_cnn

    return tiny_cnn().state_dict()
