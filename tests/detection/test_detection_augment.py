"""Boxes survive augmentation exactly: every transform moves a box exactly as it moves the
pixels of the rectangle painted inside it."""

from __future__ import annotations

import pytest
import torch

from deepshrink.detection import BatchAugment, affine, hflip, mosaic

SIZE = 64


def painted(boxes: list[list[float]], size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of one image per box list, 0 everywhere except 1.0 inside the integer boxes; the
    targets use class k for the k-th box of an image, padded with -1 rows."""
    images = torch.zeros(len(boxes), 3, size, size)
    width = max(len(b) for b in boxes)
    targets = torch.full((len(boxes), width, 5), -1.0)
    for i, image_boxes in enumerate(boxes):
        for k, (x1, y1, x2, y2) in enumerate(image_boxes):
            images[i, :, int(y1) : int(y2), int(x1) : int(x2)] = 1.0
            targets[i, k] = torch.tensor([k, x1, y1, x2, y2])
    return images, targets


def pixel_box(image: torch.Tensor, threshold: float = 0.5) -> list[float]:
    """Bounding box (x1, y1, x2, y2, pixel edges) of the pixels above threshold."""
    ys, xs = torch.nonzero(image[0] > threshold, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_flip_twice_is_identity_and_flip_moves_boxes_with_pixels() -> None:
    images, targets = painted([[[4, 10, 20, 30]], [[40, 2, 64, 12]]])
    flipped, flipped_targets = hflip(images, targets)
    for i in range(2):
        assert pixel_box(flipped[i]) == flipped_targets[i, 0, 1:].tolist()
    back, back_targets = hflip(flipped, flipped_targets)
    assert torch.equal(back, images) and torch.equal(back_targets, targets)


@pytest.mark.parametrize("flip", [False, True])
def test_integer_shift_keeps_boxes_on_their_pixels(flip: bool) -> None:
    images, targets = painted([[[10, 12, 30, 40]]])
    out, out_targets = affine(images, targets, torch.tensor([1.0]), torch.tensor([[7.0, -5.0]]), torch.tensor([flip]))
    assert pixel_box(out[0]) == out_targets[0, 0, 1:].tolist()
    expected = [17.0, 7.0, 37.0, 35.0] if not flip else [SIZE - 37.0, 7.0, SIZE - 17.0, 35.0]
    assert out_targets[0, 0].tolist() == [0.0, *expected]


def test_zoom_crop_maps_boxes_like_pixels_and_clips_or_drops() -> None:
    # Scale 2 with a -32 px shift is a random crop of the top-left 32x32 quarter, resized to 64.
    images, targets = painted([[[4, 6, 14, 20], [20, 24, 40, 30], [40, 40, 60, 60]]])
    out, out_targets = affine(images, targets, torch.tensor([2.0]), torch.tensor([[0.0, 0.0]]), torch.tensor([False]))
    assert out_targets[0, 0].tolist() == [0.0, 8.0, 12.0, 28.0, 40.0]
    box = pixel_box(out[0][:, :40, :30])  # the first rectangle's pixels alone
    assert max(abs(a - b) for a, b in zip(box, out_targets[0, 0, 1:].tolist())) <= 1.0
    # The second box reaches past the crop (x2 = 80): clipped to the image; the third leaves it.
    assert out_targets[0, 1].tolist() == [1.0, 40.0, 48.0, 64.0, 60.0]
    assert out_targets[0, 2, 0].item() == -1.0


def test_zoom_out_pads_with_fill_and_scales_boxes() -> None:
    images, targets = painted([[[8, 8, 40, 24]]])
    out, out_targets = affine(images, targets, torch.tensor([0.5]), torch.tensor([[16.0, 16.0]]), torch.tensor([False]),
                              fill=-3.0)
    assert out_targets[0, 0, 1:].tolist() == [20.0, 20.0, 36.0, 28.0]
    assert pixel_box(out[0]) == [20, 20, 36, 28]
    assert out[0, 0, 0, 0].item() == -3.0 and out[0, 0, 63, 63].item() == -3.0  # uncovered: fill


def test_mosaic_places_each_image_in_a_quadrant_with_halved_boxes() -> None:
    images, targets = painted([[[0, 0, 16, 8]], [[32, 32, 64, 64]], [[10, 20, 30, 22]], [[2, 2, 4, 6]]])
    out, out_targets = mosaic(images, targets)
    assert out.shape == images.shape and out_targets.shape == (4, 4, 5)
    rows = out_targets[0][out_targets[0, :, 0] >= 0]
    assert rows[:, 1:].tolist() == [[0, 0, 8, 4], [48, 16, 64, 32], [5, 42, 15, 43], [33, 33, 34, 35]]
    assert pixel_box(out[0][:, :32, :32]) == [0, 0, 8, 4]
    assert pixel_box(out[0][:, 32:, 32:]) == [1, 1, 2, 3]  # the fourth image's box, in its quadrant


def test_batch_augment_is_seeded_and_keeps_boxes_on_their_pixels() -> None:
    boxes = [[[6 + 3 * i, 8, 26 + 3 * i, 30]] for i in range(8)]
    images, targets = painted(boxes)
    augment = BatchAugment({"scale": (0.6, 1.6), "translate": 0.2, "flip": 0.5})
    first = augment(images, targets, torch.Generator().manual_seed(3))
    again = augment(images, targets, torch.Generator().manual_seed(3))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    out, out_targets = first
    checked = 0
    for i in range(8):
        if out_targets[i, 0, 0] < 0:
            continue
        box = out_targets[i, 0, 1:].tolist()
        assert max(abs(a - b) for a, b in zip(pixel_box(out[i]), box)) <= 1.0
        checked += 1
    assert checked >= 4


def test_batch_augment_mosaic_grows_targets() -> None:
    images, targets = painted([[[6, 8, 26, 30]]] * 4)
    out, out_targets = BatchAugment({"mosaic": 1.0, "scale": (1.0, 1.0), "translate": 0.0, "flip": 0.0})(
        images, targets, torch.Generator().manual_seed(0))
    assert out_targets.shape == (4, 4, 5)
    assert int((out_targets[..., 0] >= 0).sum()) == 16
