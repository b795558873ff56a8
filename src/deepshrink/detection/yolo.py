"""`yolo:PATH`: YOLO txt labels, one `class cx cy w h` line per box (fractions of the image).

Layouts (under one top folder or at the top): `<split>/images/*` + `<split>/labels/*.txt`
(Roboflow) or `images/<split>/*` + `labels/<split>/*.txt` (Ultralytics), split = train, valid|val,
test. Class names come from `data.yaml` (`names` list or {id: name}) or `classes.txt`.
A line of more than five numbers is a polygon (Roboflow exports mix them in); its box is the
polygon's bounding rectangle, as Ultralytics does."""

from __future__ import annotations

import posixpath

import numpy as np
import yaml

from deepshrink.detection.records import Parsed, Record, Skips, check_classes, require_splits, split_of
from deepshrink.detection.sources import Source, is_image, join
from deepshrink.errors import DataError

LAYOUT = ("<split>/images/ + <split>/labels/ (or images/<split>/ + labels/<split>/), split = train, valid|val, "
          "test, and data.yaml with `names` (or classes.txt)")


def _place(rel: str) -> tuple[str, str, str] | None:
    """(root, split, label path) of an image in either layout, else None."""
    parts = rel.split("/")
    if len(parts) < 3:
        return None
    root = "/".join(parts[:-3])
    stem = posixpath.splitext(parts[-1])[0] + ".txt"
    if parts[-2] == "images" and split_of(parts[-3]):
        return root, split_of(parts[-3]), join(root, f"{parts[-3]}/labels/{stem}")
    if parts[-3] == "images" and split_of(parts[-2]):
        return root, split_of(parts[-2]), join(root, f"labels/{parts[-2]}/{stem}")
    return None


def _class_names(source: Source, root: str) -> list[str]:
    for name in ("data.yaml", "dataset.yaml"):
        rel = join(root, name)
        if rel in source:
            try:
                config = yaml.safe_load(source.text(rel)) or {}
            except yaml.YAMLError as exc:
                raise DataError(f"{source.where(rel)}: not valid YAML ({str(exc).splitlines()[0]})") from None
            names = config.get("names") if isinstance(config, dict) else None
            if isinstance(names, dict):
                names = [names[k] for k in sorted(names)]
            if not isinstance(names, list):
                raise DataError(f"{source.where(rel)}: needs `names`, a list of class names")
            if "nc" in config and config["nc"] != len(names):
                raise DataError(f"{source.where(rel)}: nc is {config['nc']} but `names` lists {len(names)} classes")
            return check_classes([str(n) for n in names], source.where(rel))
    rel = join(root, "classes.txt")
    if rel in source:
        return check_classes([line.strip() for line in source.text(rel).splitlines() if line.strip()], source.where(rel))
    raise DataError(f"{source.where(join(root, 'data.yaml'))}: not found (nor classes.txt); expected {LAYOUT}")


def _parse_line(parts: list[str], where: str, num_classes: int) -> tuple[int, tuple[float, float, float, float]]:
    try:
        cls, values = int(parts[0]), [float(v) for v in parts[1:]]
    except ValueError:
        raise DataError(f"{where}: expected an integer class id and numbers, got '{' '.join(parts)}'") from None
    if len(values) != 4 and (len(values) < 6 or len(values) % 2):
        raise DataError(f"{where}: expected 5 values (class cx cy w h) or a polygon (class x1 y1 x2 y2 ...), "
                        f"got {len(parts)}")
    if not 0 <= cls < num_classes:
        raise DataError(f"{where}: class id {cls} is outside the class list (0..{num_classes - 1})")
    bad = next((v for v in values if not 0.0 <= v <= 1.0), None)
    if bad is not None:
        raise DataError(f"{where}: value {bad:g} is outside [0, 1] (YOLO labels are fractions of the image size)")
    if len(values) == 4:
        cx, cy, w, h = values
        return cls, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    xs, ys = values[0::2], values[1::2]
    return cls, (min(xs), min(ys), max(xs), max(ys))


def _read_labels(source: Source, rel: str, image: str, num_classes: int, skips: Skips) -> Record:
    boxes, labels = [], []
    for number, line in enumerate(source.text(rel).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{source.where(rel)}:{number}"
        cls, box = _parse_line(parts, where, num_classes)
        if box[2] <= box[0] or box[3] <= box[1]:
            skips.degenerate(where, box)
            continue
        # A box may reach past the border (cx +- w/2); clip it to the image.
        boxes.append(np.clip(box, 0.0, 1.0))
        labels.append(cls)
    return Record(image, np.array(boxes), np.array(labels), source.where(rel), normalized=True)


def read_yolo(source: Source) -> Parsed:
    placed = {rel: _place(rel) for rel in source.files if is_image(rel)}
    placed = {rel: p for rel, p in placed.items() if p is not None}
    roots = sorted({p[0] for p in placed.values()})
    if not roots:
        raise DataError(f"{source.path}: no images found; expected {LAYOUT}")
    if len(roots) > 1:
        raise DataError(f"{source.path}: YOLO splits found under several folders ({', '.join(roots)}); expected one")
    classes = _class_names(source, roots[0])
    expected_labels = {p[2] for p in placed.values()}
    for rel in source.files:  # a label file whose image is gone
        if rel.endswith(".txt") and "/labels/" in f"/{rel}" and rel not in expected_labels:
            raise DataError(f"{source.where(rel)}: label file has no matching image (missing image)")
    skips = Skips()
    splits: dict[str, list[Record]] = {}
    for image, (_, split, label) in sorted(placed.items()):
        if label not in source:
            raise DataError(f"{source.where(image)}: image has no label file (expected {source.where(label)})")
        splits.setdefault(split, []).append(_read_labels(source, label, image, len(classes), skips))
    return Parsed(classes, require_splits(splits, str(source.path), LAYOUT), skips.items)
