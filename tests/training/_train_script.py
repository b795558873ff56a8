"""Train the tiny model in a fresh process (for the kill-and-resume and DDP tests).

    python _train_script.py OUT_DIR [--resume] [--epochs N] [--bn] [--dropout P] [--augment]
    DEEPSHRINK_TEST_KILL_AT_STEP=5 python _train_script.py OUT_DIR   # SIGKILLs itself at step 5

Rank 0 writes OUT_DIR/final.pt (the state dict) and OUT_DIR/result.json (the history)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _training_fixtures import make_data, tiny_cnn  # noqa: E402

KILL_ENV = "DEEPSHRINK_TEST_KILL_AT_STEP"


class KillAtStep:
    """Sends SIGKILL to this process after optimiser step `step`: no cleanup, no flush."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state) -> None:
        if state.step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def train_once(out_dir: Path, *, resume: bool = False, epochs: int = 3, batch_size: int = 16, n_train: int = 64,
               bn: bool = False, dropout: float = 0.0, augment: bool = False, callbacks=()):
    """The run every test process repeats: same data, model init, seed and threads."""
    from deepshrink.training import TrainConfig, train

    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=0.05, augment=augment, device="cpu",
                         num_threads=1, progress=False, seed=3)
    model = tiny_cnn(bn=bn, dropout=dropout)
    return train(model, make_data(n_train=n_train), config, callbacks=callbacks, out_dir=out_dir, resume=resume)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--bn", action="store_true")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--augment", action="store_true")
    args = vars(parser.parse_args())

    import torch

    from deepshrink.fileio import write_json

    callbacks = [KillAtStep(int(os.environ[KILL_ENV]))] if os.environ.get(KILL_ENV) else []
    out_dir = args.pop("out_dir")
    result = train_once(out_dir, callbacks=callbacks, **args)
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(result.model.state_dict(), out_dir / "final.pt")
        write_json(out_dir / "result.json", result.history)


if __name__ == "__main__":
    main()
