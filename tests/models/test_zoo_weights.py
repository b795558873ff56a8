"""The shared CIFAR ResNet checkpoints load into the zoo's ResNets by name, and mismatches are named."""

from __future__ import annotations

import pytest
import torch

from deepshrink.errors import CheckpointError
from deepshrink.models import create_model, load_weights, read_state_dict


@pytest.mark.parametrize("relative", ["resnet-cifar10/resnet32-d509ac18.th", "cifar10-jpeg/resnet32.pth"])
def test_shared_resnet32_checkpoints_load_tensor_for_tensor(shared_dir, relative: str) -> None:
    path = shared_dir / "weights" / relative
    model = load_weights(create_model("resnet32"), path)
    state = read_state_dict(path)
    own = model.state_dict()
    counters = "num_batches_tracked"  # bookkeeping only the fine-tuned copies carry
    assert {k for k in own if not k.endswith(counters)} == {k for k in state if not k.endswith(counters)}
    for key, tensor in state.items():
        assert torch.equal(own[key], tensor.to(own[key].dtype)), key


@pytest.mark.parametrize("depth", [20, 44, 56])
def test_every_original_checkpoint_fits_its_depth(shared_dir, depth: int) -> None:
    (path,) = (shared_dir / "weights" / "resnet-cifar10").glob(f"resnet{depth}-*.th")
    model = load_weights(create_model(f"resnet{depth}"), path).eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


def test_shallower_checkpoint_names_the_first_missing_tensor(shared_dir) -> None:
    path = shared_dir / "weights" / "resnet-cifar10" / "resnet20-12fca82f.th"
    with pytest.raises(CheckpointError, match=r"missing tensor 'layer1\.3\.conv1\.weight' \(60 missing in all\)"):
        load_weights(create_model("resnet32"), path)


def test_deeper_checkpoint_names_the_first_unexpected_tensor(shared_dir) -> None:
    path = shared_dir / "weights" / "cifar10-jpeg" / "resnet32.pth"
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'layer1\.3\.conv1\.weight'"):
        load_weights(create_model("resnet20"), path)


def test_class_count_mismatch_names_the_classifier(shared_dir) -> None:
    path = shared_dir / "weights" / "cifar10-jpeg" / "resnet32.pth"
    message = r"tensor 'linear\.weight' has shape \(10, 64\), model expects \(100, 64\)"
    with pytest.raises(CheckpointError, match=message):
        load_weights(create_model("resnet32", num_classes=100), path)


def test_pooled_shortcuts_take_the_same_weights_and_give_the_same_logits(shared_dir) -> None:
    path = shared_dir / "weights" / "resnet-cifar10" / "resnet32-d509ac18.th"
    sliced = load_weights(create_model("resnet32"), path).eval()
    pooled = load_weights(create_model("resnet32", pooled_shortcuts=True), path).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(sliced(x), pooled(x))
