"""The training engine: `train(model, data, config, objective=..., callbacks=...)` with
checkpoints every epoch, exact resume, and the same call under `torchrun` DDP."""

from deepshrink.training.callbacks import HOOKS, Callbacks, CrossEntropyObjective, TrainState
from deepshrink.training.checkpoint import CHECKPOINT_FILE, CONFIG_FILE, HISTORY_FILE, load_checkpoint
from deepshrink.training.config import Device, Optimizer, Schedule, TrainConfig
from deepshrink.training.determinism import seed_everything
from deepshrink.training.engine import TrainResult, train
from deepshrink.training.loop import evaluate
from deepshrink.training.optim import build_optimizer, build_scheduler, lr_factor

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "HISTORY_FILE",
    "HOOKS",
    "Callbacks",
    "CrossEntropyObjective",
    "Device",
    "Optimizer",
    "Schedule",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "load_checkpoint",
    "lr_factor",
    "seed_everything",
    "train",
]
