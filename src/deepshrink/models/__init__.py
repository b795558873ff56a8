"""Model zoo, model specs and the model directory format."""

from deepshrink.models.persist import is_model_dir, load, load_weights, read_state_dict, save_model
from deepshrink.models.registry import CIFAR_MEAN, CIFAR_STD, MODELS, create_model, list_models
from deepshrink.models.resolve import resolve_model
from deepshrink.models.spec import TRANSFORMS, ModelSpec, attach_spec, derive, require_spec, spec_of

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "MODELS",
    "TRANSFORMS",
    "ModelSpec",
    "attach_spec",
    "create_model",
    "derive",
    "is_model_dir",
    "list_models",
    "load",
    "load_weights",
    "read_state_dict",
    "require_spec",
    "resolve_model",
    "save_model",
    "spec_of",
]
