"""Datasets from a spec string (`digits`, `cifar10:DIR`, `imagefolder:PATH`) as uint8 tensors, and
`BatchLoader`, which shuffles, shards, augments and normalises whole batches."""

from deepshrink.data.bundle import DataBundle, ImageSet, channel_stats, describe, stratified_split, subset
from deepshrink.data.cache import default_cache_dir
from deepshrink.data.loader import BatchLoader, sample_loader
from deepshrink.data.specs import ACCEPTED, DataScheme, DataSpec, load_data

__all__ = [
    "ACCEPTED",
    "BatchLoader",
    "DataBundle",
    "DataScheme",
    "DataSpec",
    "ImageSet",
    "channel_stats",
    "default_cache_dir",
    "describe",
    "load_data",
    "sample_loader",
    "stratified_split",
    "subset",
]
