"""Decode a split's images once, letterboxed to a fixed square: the image is resized to fit
(aspect ratio kept), centred on a gray (114) canvas, and its boxes are mapped the same way.

Pixel-coordinate boxes (VOC, COCO) are checked against the decoded image size here, the first
point where it is known for certain; a box more than one pixel outside is a DataError naming the
label file, a sub-pixel overshoot (common rounding in exports) is clipped."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from deepshrink.detection.records import Record
from deepshrink.detection.sources import Source
from deepshrink.errors import DataError

PAD_VALUE = 114  # the usual letterbox gray (YOLO); the network learns it as "no image"
OUT_OF_IMAGE_TOLERANCE = 1.0  # pixels


def letterbox_geometry(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(new width, new height, pad x, pad y) of an image fitted into a size x size square."""
    ratio = min(size / width, size / height)
    new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))
    return new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


def letterbox_image(image: Image.Image, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [3, size, size], meta [6] = original w, h, scale x, scale y, pad x, pad y)."""
    image = image.convert("RGB")
    width, height = image.size
    new_w, new_h, pad_x, pad_y = letterbox_geometry(width, height, size)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (size, size), (PAD_VALUE,) * 3)
    canvas.paste(image, (pad_x, pad_y))
    meta = np.array([width, height, new_w / width, new_h / height, pad_x, pad_y], np.float32)
    return np.asarray(canvas).transpose(2, 0, 1), meta


def map_boxes(boxes: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """Boxes in original pixels -> letterboxed pixels."""
    scale = np.array([meta[2], meta[3], meta[2], meta[3]], np.float32)
    shift = np.array([meta[4], meta[5], meta[4], meta[5]], np.float32)
    return boxes * scale + shift


def unmap_boxes(boxes: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """Letterboxed pixels -> original image pixels (for predictions shown to a user)."""
    scale = np.array([meta[2], meta[3], meta[2], meta[3]], np.float32)
    shift = np.array([meta[4], meta[5], meta[4], meta[5]], np.float32)
    return (boxes - shift) / scale


def _pixel_boxes(record: Record, width: int, height: int) -> np.ndarray:
    boxes = record.boxes
    if record.normalized:
        return boxes * np.array([width, height, width, height], np.float32)
    limit = np.array([width, height, width, height], np.float32)
    outside = (boxes < -OUT_OF_IMAGE_TOLERANCE) | (boxes > limit + OUT_OF_IMAGE_TOLERANCE)
    if outside.any():
        row = int(np.argwhere(outside)[0][0])
        shown = ", ".join(f"{v:g}" for v in boxes[row])
        raise DataError(f"{record.origin}: box ({shown}) of {record.image} lies outside the {width}x{height} image")
    return np.clip(boxes, 0, limit)


def decode_split(source: Source, records: Sequence[Record], size: int) -> dict[str, np.ndarray]:
    """images uint8 [N, 3, S, S], boxes float32 [T, 4] (letterboxed pixels), classes int64 [T],
    counts int64 [N] (boxes per image, in order), meta float32 [N, 6], names [N]."""
    images = np.empty((len(records), 3, size, size), np.uint8)
    metas = np.empty((len(records), 6), np.float32)
    boxes, classes = [], []
    for i, record in enumerate(records):
        try:
            with Image.open(io.BytesIO(source.read(record.image))) as image:
                images[i], metas[i] = letterbox_image(image, size)
        except DataError:
            raise
        except Exception as exc:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ...
            raise DataError(f"{source.where(record.image)}: cannot read image ({type(exc).__name__}: {exc})") from None
        width, height = int(metas[i, 0]), int(metas[i, 1])
        boxes.append(map_boxes(_pixel_boxes(record, width, height), metas[i]))
        classes.append(record.labels)
    return {
        "images": images,
        "boxes": np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32),
        "classes": np.concatenate(classes).astype(np.int64) if classes else np.zeros(0, np.int64),
        "counts": np.array([len(r.labels) for r in records], np.int64),
        "meta": metas,
        "names": np.array([r.image for r in records]),
    }
