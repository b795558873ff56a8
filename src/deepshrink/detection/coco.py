"""`coco:PATH`: COCO JSON. Layouts: `<split>/_annotations.coco.json` with the images beside it
(Roboflow), or `annotations/instances_<split>.json` with images in `<split>/` or `images/<split>/`;
split = train, valid|val, test (a year suffix such as train2017 is allowed).

Categories become classes in id order. An annotation whose category is not in `categories` is an
error (a class id beyond the class list); crowd annotations and boxes with zero or negative size
are reported by file and skipped. Images without annotations are kept as background images."""

from __future__ import annotations

import json
import posixpath

import numpy as np

from deepshrink.detection.records import Parsed, Record, Skips, check_classes, require_splits, split_of
from deepshrink.detection.sources import Source, join
from deepshrink.errors import DataError

LAYOUT = "<split>/_annotations.coco.json (images beside it) or annotations/instances_<split>.json"
ROBOFLOW_FILE = "_annotations.coco.json"


def _annotation_files(source: Source) -> dict[str, tuple[str, list[str]]]:
    """split -> (JSON path, candidate image folders)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for rel in source.files:
        folder, name = posixpath.split(rel)
        parent, last = posixpath.split(folder)
        if name == ROBOFLOW_FILE and split_of(last):
            found[split_of(last)] = (rel, [folder])
        elif last == "annotations" and name.startswith("instances_") and name.endswith(".json"):
            split_name = name[len("instances_") : -len(".json")]
            if split_of(split_name):
                found[split_of(split_name)] = (rel, [join(parent, split_name), join(parent, f"images/{split_name}")])
    if not found:
        raise DataError(f"{source.path}: no COCO annotation files found; expected {LAYOUT}")
    return found


def _load(source: Source, rel: str) -> dict:
    try:
        data = json.loads(source.read(rel))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{source.where(rel)}: not valid JSON ({exc})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise DataError(f"{source.where(rel)}: needs a '{key}' list")
    return data


def _categories(loaded: dict[str, dict]) -> tuple[list[str], dict[int, int]]:
    """Class names in category-id order, the same in every split's file ({where: JSON data})."""
    seen = None
    for where, data in loaded.items():
        try:
            cats = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: each category needs an integer 'id' and a 'name'") from None
        if seen is not None and cats != seen[1]:
            raise DataError(f"{where}: categories differ from {seen[0]}")
        seen = (where, cats)
    names = check_classes([name for _, name in seen[1]], seen[0])
    return names, {cat_id: i for i, (cat_id, _) in enumerate(seen[1])}


def _image_path(source: Source, folders: list[str], file_name: str, where: str) -> str:
    for folder in folders:
        if join(folder, file_name) in source:
            return join(folder, file_name)
    raise DataError(f"{source.where(join(folders[0], file_name))}: image not found (listed in {where})")


def _split(source: Source, data: dict, where: str, folders: list[str], index: dict[int, int], skips: Skips) -> list[Record]:
    try:
        images = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: each image needs an integer 'id' and a 'file_name'") from None
    boxes: dict[int, list] = {i: [] for i in images}
    labels: dict[int, list] = {i: [] for i in images}
    for ann in data["annotations"]:
        at = f"{where} (annotation {ann.get('id', '?')})"
        if ann.get("image_id") not in images:
            raise DataError(f"{at}: image_id {ann.get('image_id')!r} is not in 'images'")
        if ann.get("category_id") not in index:
            raise DataError(f"{at}: category_id {ann.get('category_id')!r} is outside the class list "
                            f"(categories: {sorted(index)})")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            raise DataError(f"{at}: bbox must be [x, y, width, height], got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        if ann.get("iscrowd"):
            skips.add(at, "skipped a crowd annotation")
        elif w <= 0 or h <= 0:
            skips.degenerate(at, (x, y, w, h))
        else:
            boxes[ann["image_id"]].append((x, y, x + w, y + h))
            labels[ann["image_id"]].append(index[ann["category_id"]])
    return [
        Record(_image_path(source, folders, name, where), np.array(boxes[i]), np.array(labels[i]), where)
        for i, name in images.items()
    ]


def read_coco(source: Source) -> Parsed:
    files = _annotation_files(source)
    loaded = {source.where(rel): _load(source, rel) for rel, _ in files.values()}
    classes, index = _categories(loaded)
    skips = Skips()
    splits = {
        split: _split(source, loaded[source.where(rel)], source.where(rel), folders, index, skips)
        for split, (rel, folders) in files.items()
    }
    return Parsed(classes, require_splits(splits, str(source.path), LAYOUT), skips.items)
