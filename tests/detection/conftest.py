"""Fixtures for the detection tests: tiny generated datasets (see det_fixtures.py) and a tiny
detector. Every load uses a cache folder inside tmp_path, never the user's cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from det_fixtures import write_coco, write_voc, write_yolo

from deepshrink.detection import load_detection
from deepshrink.detection.models import build_fcos

TINY = {"width_mult": 0.25, "depth_mult": 0.5, "neck_width": 16, "head_depth": 1}


@pytest.fixture
def yolo_dir(tmp_path: Path) -> Path:
    return write_yolo(tmp_path / "yolo")


@pytest.fixture
def voc_dir(tmp_path: Path) -> Path:
    return write_voc(tmp_path / "voc")


@pytest.fixture
def coco_dir(tmp_path: Path) -> Path:
    return write_coco(tmp_path / "coco")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def tiny_bundle(yolo_dir: Path, cache: Path):
    return load_detection(f"yolo:{yolo_dir}", image_size=64, cache_dir=cache)


@pytest.fixture
def tiny_detector():
    def make(backbone: str = "resnet", num_classes: int = 3, **overrides):
        return build_fcos(backbone, num_classes, **{**TINY, **overrides})

    return make
