"""Each format's loader on generated fixtures: splits, classes, letterboxed boxes against the
painted pixels, archives, caching, and the errors and skips a user would expect."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from det_fixtures import CLASSES, COLOURS, expected_boxes, make_tar, write_coco, write_yolo

from deepshrink.data import BatchLoader
from deepshrink.detection import dataset as dataset_module
from deepshrink.detection import load_detection
from deepshrink.errors import ConfigError, DataError


def _check_bundle(bundle, classes) -> None:
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (6, 2, 2)
    assert bundle.classes == classes and bundle.input_size == (3, 64, 64)
    assert bundle.train.images.dtype == torch.uint8 and bundle.train.images.shape == (6, 3, 64, 64)
    for i in range(6):  # train images are img000..img005 in order
        boxes, labels = bundle.train.boxes(i)
        np.testing.assert_allclose(boxes.numpy(), expected_boxes(i), atol=1e-3)
        for box, label in zip(boxes.round().long().tolist(), labels.tolist()):
            x1, y1, x2, y2 = box
            centre = bundle.train.images[i, :, (y1 + y2) // 2, (x1 + x2) // 2].tolist()
            assert centre == list(COLOURS[CLASSES.index(classes[label])])  # the box sits on its rectangle


@pytest.mark.parametrize("layout", ["roboflow", "ultralytics"])
def test_yolo_directory_letterboxes_images_and_boxes(tmp_path: Path, cache: Path, layout: str) -> None:
    root = write_yolo(tmp_path / "y", layout=layout)
    bundle = load_detection(f"yolo:{root}", image_size=64, cache_dir=cache)
    _check_bundle(bundle, CLASSES)
    assert bundle.train.images[0, :, 0, 0].tolist() == [114, 114, 114]  # vertical letterbox padding
    assert bundle.train.meta[0].tolist() == pytest.approx([96, 64, 2 / 3, 43 / 64, 0, 10])  # 64 * 2/3 rounds to 43 rows


def test_voc_directory_sorts_classes_by_name(voc_dir: Path, cache: Path) -> None:
    _check_bundle(load_detection(f"voc:{voc_dir}", image_size=64, cache_dir=cache), tuple(sorted(CLASSES)))


@pytest.mark.parametrize("layout", ["roboflow", "standard"])
def test_coco_directory_both_layouts(tmp_path: Path, cache: Path, layout: str) -> None:
    root = write_coco(tmp_path / "c", layout=layout)
    _check_bundle(load_detection(f"coco:{root}", image_size=64, cache_dir=cache), CLASSES)


def test_archive_equals_directory_and_second_load_reads_the_cache(yolo_dir: Path, tmp_path: Path, cache: Path,
                                                                  monkeypatch) -> None:
    archive = make_tar(yolo_dir, tmp_path / "set.tar.gz", "set")
    from_dir = load_detection(f"yolo:{yolo_dir}", image_size=64, cache_dir=cache)
    from_tar = load_detection(f"yolo:{archive}", image_size=64, cache_dir=cache)
    assert torch.equal(from_dir.test.images, from_tar.test.images)
    assert torch.equal(from_dir.train.targets, from_tar.train.targets)
    monkeypatch.setattr(dataset_module, "_decode", lambda *a: pytest.fail("decoded again despite the cache"))
    cached = load_detection(f"yolo:{archive}", image_size=64, cache_dir=cache)
    assert torch.equal(cached.train.targets, from_tar.train.targets)


def test_batch_loader_batches_padded_targets(tiny_bundle) -> None:
    loader = BatchLoader(tiny_bundle.train, 4, train=False, mean=tiny_bundle.mean, std=tiny_bundle.std)
    images, targets = next(iter(loader))
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.float32
    assert torch.equal(targets, tiny_bundle.train.targets[:4])
    assert (targets[0, 1:, 0] == -1).all()  # image 0 has one box; the rest is padding


def test_missing_val_split_is_carved_from_train(tmp_path: Path, cache: Path) -> None:
    root = write_yolo(tmp_path / "y", sizes={"train": 10, "test": 2})
    bundle = load_detection(f"yolo:{root}", image_size=64, cache_dir=cache, val_fraction=0.2, seed=1)
    assert (len(bundle.train), len(bundle.val)) == (8, 2)
    assert not set(bundle.train.names) & set(bundle.val.names)


def test_polygon_lines_become_their_bounding_box(yolo_dir: Path, cache: Path) -> None:
    (yolo_dir / "train/labels/img000.txt").write_text("2 0.1 0.2 0.5 0.25 0.3 0.75\n")
    boxes, labels = load_detection(f"yolo:{yolo_dir}", image_size=64, cache_dir=cache).train.boxes(0)
    # Polygon extent x 0.1..0.5 of 96 px, y 0.2..0.75 of 64 px; letterbox scales x by 64/96 and y
    # by 43/64 (the resized image has 43 rows), then pads 10 rows on top.
    np.testing.assert_allclose(boxes.numpy(), [[6.4, 12.8 * 43 / 64 + 10, 32.0, 48 * 43 / 64 + 10]], atol=1e-4)
    assert labels.tolist() == [2]


def _label(text: str):
    return lambda root: (root / "train/labels/img001.txt").write_text(text)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_label("0 0.5 1.2 0.1 0.1\n"), r"img001.txt:1: value 1.2 is outside \[0, 1\]"),
        (_label("3 0.5 0.5 0.1 0.1\n"), r"img001.txt:1: class id 3 is outside the class list \(0..2\)"),
        (_label("0 0.5 0.5\n"), r"img001.txt:1: expected 5 values"),
        (lambda r: (r / "train/labels/img002.txt").unlink(), r"img002.png: image has no label file"),
        (lambda r: (r / "test/images/img200.png").unlink(), r"img200.txt: label file has no matching image"),
        (lambda r: (r / "data.yaml").write_text("nc: 3\n"), r"data.yaml: needs `names`"),
    ],
)
def test_yolo_bad_input_names_the_file(yolo_dir: Path, cache: Path, edit, message: str) -> None:
    edit(yolo_dir)
    with pytest.raises(DataError, match=message):
        load_detection(f"yolo:{yolo_dir}", image_size=64, cache_dir=cache)


def test_yolo_degenerate_box_is_reported_and_skipped(yolo_dir: Path, cache: Path, caplog) -> None:
    (yolo_dir / "train/labels/img000.txt").write_text("0 0.5 0.5 0.0 0.2\n1 0.5 0.5 0.2 0.2\n")
    with caplog.at_level(logging.WARNING, logger="deepshrink.detection"):
        bundle = load_detection(f"yolo:{yolo_dir}", image_size=64, cache_dir=cache)
    assert bundle.train.boxes(0)[1].tolist() == [1]
    assert len(bundle.skipped) == 1 and "img000.txt:1: skipped a degenerate box" in bundle.skipped[0]
    assert "img000.txt:1" in caplog.text


def test_voc_degenerate_and_missing_files(voc_dir: Path, cache: Path, caplog) -> None:
    xml = voc_dir / "Annotations/img001.xml"
    text = xml.read_text()
    xml.write_text(text.replace("</annotation>", "<object><name>car</name><bndbox><xmin>30</xmin><ymin>20</ymin>"
                                                 "<xmax>30</xmax><ymax>20</ymax></bndbox></object></annotation>"))
    with caplog.at_level(logging.WARNING, logger="deepshrink.detection"):
        bundle = load_detection(f"voc:{voc_dir}", image_size=64, cache_dir=cache)
    assert len(bundle.skipped) == 1 and "img001.xml (object 2): skipped a degenerate box (30, 20, 30, 20)" in bundle.skipped[0]
    assert "img001.xml" in caplog.text
    (voc_dir / "Annotations/img200.xml").unlink()
    with pytest.raises(DataError, match=r"img200.xml: not found, but .*test.txt lists 'img200'"):
        load_detection(f"voc:{voc_dir}", image_size=64, cache_dir=cache)
    (voc_dir / "JPEGImages/img101.png").unlink()  # val is read before test
    with pytest.raises(DataError, match=r"JPEGImages/img101.png: image not found \(named by .*img101.xml\)"):
        load_detection(f"voc:{voc_dir}", image_size=64, cache_dir=cache)


def test_voc_box_outside_the_image_is_an_error(voc_dir: Path, cache: Path) -> None:
    xml = voc_dir / "Annotations/img003.xml"
    xml.write_text(xml.read_text().replace("</annotation>", "<object><name>car</name><bndbox><xmin>50</xmin>"
                                           "<ymin>5</ymin><xmax>120</xmax><ymax>30</ymax></bndbox></object></annotation>"))
    with pytest.raises(DataError, match=r"img003.xml: box \(50, 5, 120, 30\) of .*img003.png lies outside the 96x64 image"):
        load_detection(f"voc:{voc_dir}", image_size=64, cache_dir=cache)


def test_coco_unknown_category_missing_image_and_skips(coco_dir: Path, cache: Path) -> None:
    import json

    path = coco_dir / "train/_annotations.coco.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["bbox"][2] = 0.0
    data["annotations"][1]["iscrowd"] = 1
    path.write_text(json.dumps(data))
    bundle = load_detection(f"coco:{coco_dir}", image_size=64, cache_dir=cache)
    shown = ", ".join(f"{v:g}" for v in data["annotations"][0]["bbox"])
    assert [s.split(": ", 1)[1] for s in bundle.skipped] == [
        f"skipped a degenerate box ({shown}): zero or negative width or height",
        "skipped a crowd annotation",
    ]
    data["annotations"][2]["category_id"] = 9
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"coco.json \(annotation 3\): category_id 9 is outside the class list"):
        load_detection(f"coco:{coco_dir}", image_size=64, cache_dir=cache)
    (coco_dir / "test/img201.png").unlink()
    with pytest.raises(DataError, match=r"test/img201.png: image not found"):
        load_detection(f"coco:{coco_dir}", image_size=64, cache_dir=cache)


def test_spec_and_option_errors(yolo_dir: Path, cache: Path) -> None:
    with pytest.raises(DataError, match=r"unknown detection data spec 'yolov:.*did you mean: yolo"):
        load_detection(f"yolov:{yolo_dir}")
    with pytest.raises(DataError, match=r"nowhere: not found"):
        load_detection("voc:nowhere")
    with pytest.raises(ConfigError, match=r"image_size must be a positive multiple of 32, got 50"):
        load_detection(f"yolo:{yolo_dir}", image_size=50, cache_dir=cache)
    (yolo_dir / "test/images/img200.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"test/images/img200.png: cannot read image"):
        load_detection(f"yolo:{yolo_dir}", image_size=64, cache_dir=cache)


@pytest.mark.shared
def test_shared_bccd_reports_its_two_degenerate_boxes(shared_dir: Path, tmp_path: Path) -> None:
    bundle = load_detection(f"voc:{shared_dir / 'datasets/bccd-voc.tar.gz'}", image_size=64, cache_dir=tmp_path)
    assert bundle.classes == ("Platelets", "RBC", "WBC")
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (205, 87, 72)
    assert sorted(s.split(".xml")[0][-5:] for s in bundle.skipped) == ["00338", "00343"]
