"""evaluate / evaluate_onnx on a hand-made DataBundle whose predictions the test controls: each
image is one pixel holding its sample id, and a lookup model returns a chosen logit row per id."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.data import DataBundle, ImageSet
from deepshrink.errors import ConfigError, DataError, ModelError
from deepshrink.export import export_onnx
from deepshrink.metrics import evaluate, evaluate_onnx

CLASSES = 6
LABELS = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2, 3], dtype=torch.int64)


class Lookup(nn.Module):
    """Reads the sample id back from the (mean 0, std 1) normalised pixel and returns its row."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = torch.round(x.flatten(1)[:, 0] * 255.0).long()
        return self.table[ids.clamp(0, self.table.shape[0] - 1)]  # export traces random inputs


def _logits_with_rank(label: int, rank: int) -> torch.Tensor:
    """A logit row in which the true label is the `rank`-th highest (0 = predicted)."""
    order = [c for c in range(CLASSES) if c != label]
    order.insert(rank, label)
    row = torch.empty(CLASSES)
    row[torch.tensor(order)] = torch.arange(CLASSES, 0, -1, dtype=torch.float32)
    return row


# sample ids 0..9: 4 right at top-1, 3 more within top-5, 3 outside (rank 5 of 6)
RANKS = [0, 0, 0, 0, 1, 2, 4, 5, 5, 5]
TABLE = torch.stack([_logits_with_rank(int(y), r) for y, r in zip(LABELS, RANKS)])


def _bundle(n: int = 10) -> DataBundle:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)
    split = ImageSet(images, LABELS[:n].clone())
    return DataBundle(
        train=split, val=ImageSet(images[:0], LABELS[:0]), test=split, classes=tuple("abcdef"),
        num_classes=CLASSES, input_size=(1, 1, 1), mean=(0.0,), std=(1.0,), name="ids",
    )


def test_top1_top5_and_loss_are_exact():
    result = evaluate(Lookup(TABLE), _bundle(), batch_size=3)
    assert result["n"] == 10
    assert result["top1"] == pytest.approx(40.0)
    assert result["top5"] == pytest.approx(70.0)
    assert result["loss"] == pytest.approx(float(F.cross_entropy(TABLE, LABELS)), rel=1e-6)


def test_limit_batches_and_train_mode_kept():
    model = Lookup(TABLE).train()
    result = evaluate(model, _bundle(), batch_size=4, limit_batches=1)  # ids 0..3, all top-1
    assert (result["n"], result["top1"]) == (4, 100.0)
    assert model.training


def test_onnx_graph_scores_the_same(tmp_path):
    model = Lookup(TABLE)
    path = export_onnx(model, tmp_path / "lookup.onnx", (1, 1, 1))
    expected = evaluate(model, _bundle(), batch_size=4)
    got = evaluate_onnx(path, _bundle(), batch_size=4, threads=1)
    assert (got["n"], got["top1"], got["top5"]) == (expected["n"], expected["top1"], expected["top5"])
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_class_count_mismatch_names_both_numbers():
    seven = torch.cat([TABLE, torch.zeros(10, 1)], dim=1)
    with pytest.raises(ModelError, match="Lookup outputs 7 classes but dataset 'ids' has 6"):
        evaluate(Lookup(seven), _bundle())


def test_bad_split_and_data():
    with pytest.raises(ConfigError, match="unknown split 'dev'; choose one of: test, val, train"):
        evaluate(Lookup(TABLE), _bundle(), split="dev")
    with pytest.raises(DataError, match="split 'val' of dataset 'ids' is empty"):
        evaluate(Lookup(TABLE), _bundle(), split="val")
    with pytest.raises(ConfigError, match="data must be a DataBundle or a data spec string"):
        evaluate(Lookup(TABLE), [1, 2, 3])


def test_a_data_spec_string_is_loaded():
    import deepshrink

    result = evaluate(deepshrink.create_model("digits_cnn"), "digits", batch_size=32, limit_batches=1)
    assert result["n"] == 32 and 0.0 <= result["top1"] <= result["top5"] <= 100.0
