"""Pipeline steps, each registered by name in STEPS; importing this package registers them all."""

from deepshrink.pipeline.steps.base import STEPS, Step, StepOutput, register_step
from deepshrink.pipeline.steps import basic, distill, export, prune, quantize, search_decompose  # noqa: F401  (registration)

__all__ = ["STEPS", "Step", "StepOutput", "register_step"]
