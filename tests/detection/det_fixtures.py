"""Writers for tiny detection datasets in tmp_path, in YOLO, VOC and COCO form, from the same
scenes: a gray photo with a few flat-coloured rectangles whose boxes are known exactly.

Images are PNG (pixel values exact) and 96x64 (W x H) by default, so letterboxing to 64 both
scales (by 2/3) and pads (vertically), and every box mapping is checked against pixels."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("car", "bus", "person")
COLOURS = ((220, 30, 30), (30, 200, 40), (40, 60, 230))  # one flat colour per class
BACKGROUND = 90
SPLIT_SIZES = {"train": 6, "val": 2, "test": 2}


def scene(index: int, size: tuple[int, int] = (64, 96)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image HxWx3 uint8, boxes [n, 4] xyxy pixels, classes [n]); deterministic per index."""
    h, w = size
    rng = np.random.default_rng(index)
    image = np.full((h, w, 3), BACKGROUND, np.uint8)
    boxes, classes = [], []
    column = w // 3
    for k in range(1 + index % 3):  # rectangle k lies in the k-th third of the width: no overlaps
        bw, bh = int(rng.integers(10, column - 1)), int(rng.integers(10, 24))
        x1 = k * column + int(rng.integers(0, column - bw + 1))
        y1 = int(rng.integers(0, h - bh))
        cls = (index + k) % len(CLASSES)
        image[y1 : y1 + bh, x1 : x1 + bw] = COLOURS[cls]
        boxes.append((x1, y1, x1 + bw, y1 + bh))
        classes.append(cls)
    return image, np.array(boxes, np.float32), np.array(classes, np.int64)


def _scenes(split: str, n: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    base = {"train": 0, "val": 100, "test": 200}[split]
    return [(f"img{base + i:03d}", *scene(base + i)) for i in range(n)]


def write_yolo(root: Path, *, layout: str = "roboflow", sizes: dict | None = None) -> Path:
    """`<split>/images` + `<split>/labels` (roboflow, val folder named 'valid') or
    `images/<split>` + `labels/<split>` (ultralytics), with data.yaml."""
    for split, n in (sizes or SPLIT_SIZES).items():
        folder = "valid" if split == "val" and layout == "roboflow" else split
        images = root / (f"{folder}/images" if layout == "roboflow" else f"images/{folder}")
        labels = root / (f"{folder}/labels" if layout == "roboflow" else f"labels/{folder}")
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for name, image, boxes, classes in _scenes(split, n):
            Image.fromarray(image).save(images / f"{name}.png")
            h, w = image.shape[:2]
            lines = [f"{c} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} {(b[2] - b[0]) / w:.6f} "
                     f"{(b[3] - b[1]) / h:.6f}" for b, c in zip(boxes, classes)]
            (labels / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(f"names: {list(CLASSES)}\nnc: {len(CLASSES)}\n")
    return root


def write_voc(root: Path, *, sizes: dict | None = None) -> Path:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for split, n in (sizes or SPLIT_SIZES).items():
        ids = []
        for name, image, boxes, classes in _scenes(split, n):
            Image.fromarray(image).save(root / "JPEGImages" / f"{name}.png")
            objects = "".join(
                f"<object><name>{CLASSES[c]}</name><difficult>0</difficult><bndbox><xmin>{b[0]:g}</xmin>"
                f"<ymin>{b[1]:g}</ymin><xmax>{b[2]:g}</xmax><ymax>{b[3]:g}</ymax></bndbox></object>"
                for b, c in zip(boxes, classes)
            )
            h, w = image.shape[:2]
            xml = (f"<annotation><filename>{name}.png</filename><size><width>{w}</width><height>{h}</height>"
                   f"<depth>3</depth></size>{objects}</annotation>")
            (root / "Annotations" / f"{name}.xml").write_text(xml)
            ids.append(name)
        (root / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def write_coco(root: Path, *, layout: str = "roboflow", sizes: dict | None = None) -> Path:
    """`<split>/_annotations.coco.json` beside the images (roboflow) or
    `annotations/instances_<split>.json` + `<split>/` (standard). Category ids start at 1."""
    for split, n in (sizes or SPLIT_SIZES).items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for image_id, (name, image, boxes, classes) in enumerate(_scenes(split, n), 1):
            Image.fromarray(image).save(folder / f"{name}.png")
            images.append({"id": image_id, "file_name": f"{name}.png", "height": image.shape[0], "width": image.shape[1]})
            for b, c in zip(boxes, classes):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c) + 1,
                                    "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                                    "area": float((b[2] - b[0]) * (b[3] - b[1])), "iscrowd": 0})
        data = {"images": images, "annotations": annotations,
                "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]}
        if layout == "roboflow":
            (folder / "_annotations.coco.json").write_text(json.dumps(data))
        else:
            (root / "annotations").mkdir(exist_ok=True)
            (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root


def make_tar(source: Path, archive: Path, arcname: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=arcname)
    return archive


def expected_boxes(index: int, size: int = 64, shape: tuple[int, int] = (64, 96)) -> np.ndarray:
    """Scene `index`'s boxes after letterboxing a (H, W) image into size x size."""
    _, boxes, _ = scene(index, shape)
    h, w = shape
    ratio = min(size / w, size / h)
    new_w, new_h = round(w * ratio), round(h * ratio)
    scale = np.array([new_w / w, new_h / h] * 2, np.float32)
    shift = np.array([(size - new_w) // 2, (size - new_h) // 2] * 2, np.float32)
    return boxes * scale + shift


def tiny_fcos(num_classes: int = 3, **kwargs):
    """A tiny FCOS for recipes in tests (`det_fixtures:tiny_fcos`)."""
    from deepshrink.detection.models import build_fcos

    options = {"width_mult": 0.25, "depth_mult": 0.5, "neck_width": 16, "head_depth": 1, **kwargs}
    return build_fcos("resnet", num_classes, **options)
