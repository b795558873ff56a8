"""`voc:PATH`: Pascal VOC XML, `Annotations/<id>.xml` + `JPEGImages/<image>` with the splits
listed in `ImageSets/Main/{train,val,test}.txt` (under one top folder or at the top).

Boxes are taken as written (x1 = xmin, x2 = xmax, as torchvision and Ultralytics read them), so a
box with xmax <= xmin is degenerate: reported by file and skipped. Classes are the sorted set of
object names over all annotations. `difficult` objects are kept as ordinary boxes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from deepshrink.detection.records import Parsed, Record, Skips, check_classes, require_splits
from deepshrink.detection.sources import Source, join
from deepshrink.errors import DataError

LAYOUT = "Annotations/<id>.xml, JPEGImages/<image>, ImageSets/Main/{train,val,test}.txt"
_COORDS = ("xmin", "ymin", "xmax", "ymax")


def _root(source: Source) -> str:
    roots = source.find_roots("Annotations/")
    if not roots:
        raise DataError(f"{source.path}: no Annotations/ folder found; expected {LAYOUT}")
    if len(roots) > 1:
        raise DataError(f"{source.path}: Annotations/ found under several folders ({', '.join(roots)}); expected one")
    return roots[0]


def _objects(source: Source, rel: str) -> tuple[str | None, list[tuple[str, tuple[float, ...], str]]]:
    """(the <filename> it names, [(class name, box, where)]) of one XML file."""
    where = source.where(rel)
    try:
        root = ET.fromstring(source.read(rel))
    except ET.ParseError as exc:
        raise DataError(f"{where}: not valid XML ({exc})") from None
    objects = []
    for index, obj in enumerate(root.iter("object")):
        at = f"{where} (object {index})"
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError(f"{at}: has no <name>")
        box = obj.find("bndbox")
        if box is None:
            raise DataError(f"{at}: has no <bndbox>")
        try:
            coords = tuple(float(box.findtext(k)) for k in _COORDS)
        except (TypeError, ValueError):
            raise DataError(f"{at}: <bndbox> needs numeric {', '.join(_COORDS)}") from None
        objects.append((name, coords, at))
    filename = (root.findtext("filename") or "").strip() or None
    return filename, objects


def _ids(source: Source, rel: str) -> list[str]:
    return [line.split()[0] for line in source.text(rel).splitlines() if line.strip()]


def read_voc(source: Source) -> Parsed:
    root = _root(source)
    lists = {split: join(root, f"ImageSets/Main/{split}.txt") for split in ("train", "val", "test")}
    if not any(rel in source for rel in lists.values()):
        raise DataError(f"{source.where(join(root, 'ImageSets/Main'))}: no train/val/test lists; expected {LAYOUT}")
    parsed: dict[str, tuple[str, list]] = {}
    split_ids = {split: _ids(source, rel) for split, rel in lists.items() if rel in source}
    for split, ids in split_ids.items():
        for image_id in ids:
            rel = join(root, f"Annotations/{image_id}.xml")
            if rel not in source:
                raise DataError(f"{source.where(rel)}: not found, but {source.where(lists[split])} lists "
                                f"'{image_id}' (an image without a label file)")
            if image_id not in parsed:
                filename, objects = _objects(source, rel)
                image = join(root, f"JPEGImages/{filename or image_id + '.jpg'}")
                if image not in source:
                    raise DataError(f"{source.where(image)}: image not found (named by {source.where(rel)})")
                parsed[image_id] = (image, objects)
    classes = check_classes(sorted({o[0] for _, objects in parsed.values() for o in objects}), str(source.path))
    index = {name: i for i, name in enumerate(classes)}
    skips = Skips()
    splits: dict[str, list[Record]] = {}
    for split, ids in split_ids.items():
        for image_id in ids:
            image, objects = parsed[image_id]
            boxes, labels = [], []
            for name, box, at in objects:
                if box[2] <= box[0] or box[3] <= box[1]:
                    skips.degenerate(at, box)
                    continue
                boxes.append(box)
                labels.append(index[name])
            origin = source.where(join(root, f"Annotations/{image_id}.xml"))
            splits.setdefault(split, []).append(Record(image, np.array(boxes), np.array(labels), origin))
    return Parsed(classes, require_splits(splits, str(source.path), LAYOUT), skips.items)
