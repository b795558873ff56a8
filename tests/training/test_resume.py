"""Checkpoints and exact resume: a run SIGKILLed mid-epoch and resumed ends with the very same
weights as an uninterrupted run; a checkpoint that does not fit is refused by name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _train_script import KILL_ENV, train_once
from _training_fixtures import make_data, tiny_cnn

from deepshrink.errors import CheckpointError, ConfigError
from deepshrink.fileio import read_json, safe_torch_load
from deepshrink.training import CHECKPOINT_FILE, CONFIG_FILE, HISTORY_FILE, TrainConfig, load_checkpoint, train

SCRIPT = Path(__file__).with_name("_train_script.py")
RUN = ["--bn", "--dropout", "0.3", "--augment"]  # BN buffers, dropout RNG and augmentation all in play
STEPS_PER_EPOCH = 4  # 64 images / batch 16


def _script(out_dir: Path, *args: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(KILL_ENV, None)
    if kill_at is not None:
        env[KILL_ENV] = str(kill_at)
    return subprocess.run([sys.executable, str(SCRIPT), str(out_dir), *RUN, *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    reference = train_once(tmp_path / "ref", bn=True, dropout=0.3, augment=True).model.state_dict()

    killed = _script(tmp_path / "run", kill_at=STEPS_PER_EPOCH + 2)  # two steps into epoch 2
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["epoch"] == 1
    assert not (tmp_path / "run" / "final.pt").exists()

    resumed = _script(tmp_path / "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    weights = torch.load(tmp_path / "run" / "final.pt", weights_only=True)
    assert weights.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(weights[name], tensor), f"{name} differs after resume"
    history = read_json(tmp_path / "run" / "result.json")
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["step"] == 3 * STEPS_PER_EPOCH


class _Crash(Exception):
    pass


class _CrashAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state) -> None:
        if state.step == self.step:
            raise _Crash


def test_in_process_crash_and_resume_matches(tmp_path):
    reference = train_once(tmp_path / "ref", epochs=2).model
    with pytest.raises(_Crash):
        train_once(tmp_path / "run", epochs=2, callbacks=[_CrashAt(STEPS_PER_EPOCH + 1)])
    resumed = train_once(tmp_path / "run", epochs=2, resume=True)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.model.state_dict().values()))
    assert [r["epoch"] for r in resumed.history] == [1, 2]


def test_run_directory_files(tmp_path):
    result = train_once(tmp_path, epochs=2)
    ckpt = safe_torch_load(tmp_path / CHECKPOINT_FILE)  # weights_only=True
    assert ckpt["epoch"] == 2 and ckpt["step"] == 2 * STEPS_PER_EPOCH
    assert set(ckpt) >= {"model", "optimizer", "scheduler", "objective", "rng", "config", "history"}
    assert ckpt["scheduler"]["last_epoch"] == 2 * STEPS_PER_EPOCH
    assert read_json(tmp_path / HISTORY_FILE) == result.history
    assert read_json(tmp_path / CONFIG_FILE)["epochs"] == 2


def test_resume_extends_epochs_and_refuses_changed_fields(tmp_path):
    train_once(tmp_path, epochs=1)
    extended = train_once(tmp_path, epochs=2, resume=True)
    assert [r["epoch"] for r in extended.history] == [1, 2]
    with pytest.raises(ConfigError, match="batch_size: the checkpoint .* batch_size=16, this run has batch_size=32"):
        train_once(tmp_path, epochs=3, batch_size=32, resume=True)
    with pytest.raises(ConfigError, match="epochs: the checkpoint .* 2 completed epochs, this run asks for 1"):
        train_once(tmp_path, epochs=1, resume=True)


def test_resume_with_another_models_checkpoint_names_the_tensor(tmp_path):
    train_once(tmp_path, epochs=1)  # BN-free model: conv has a bias, no BN tensors
    config = TrainConfig(epochs=2, batch_size=16, lr=0.05, augment=False, device="cpu", num_threads=1,
                         progress=False, seed=3)
    with pytest.raises(CheckpointError, match=r"missing tensor '1\.weight'"):
        train(tiny_cnn(bn=True), make_data(), config, out_dir=tmp_path, resume=True)


def test_resume_needs_out_dir_and_starts_fresh_without_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="resume: needs out_dir"):
        train(tiny_cnn(), make_data(), TrainConfig(epochs=1, batch_size=16, progress=False), resume=True)
    result = train_once(tmp_path / "new", epochs=1, resume=True)
    assert len(result.history) == 1 and (tmp_path / "new" / CHECKPOINT_FILE).is_file()
