"""What this CPU means for deployed kernels: whether ONNX Runtime's int8 kernels can saturate, and
the channel block its float convolutions work in.

On x86 CPUs without VNNI, ONNX Runtime (MLAS) multiplies uint8 activations by int8 weights with
VPMADDUBSW, which adds each pair of products into a saturating 16-bit lane: 255 * 127 * 2 exceeds
32767, so the deployed model silently computes something else than the fake-quant model simulated.
Measured here (AVX2, no VNNI) on digits_cnn W8A8: logits off by up to 3.6, top-1 1.1 points below
the simulation; with 7-bit weights ([-63, 63], pair sums below 32767) the two agree. CPUs with
AVX512-VNNI, AVX-VNNI or AMX accumulate in 32 bits and are not affected; neither is ARM."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

X86 = ("x86_64", "amd64", "i386", "i686", "x86")
WIDE_INT8_DOT = frozenset({"avx512_vnni", "avx512vnni", "avx_vnni", "avxvnni", "amx_int8"})


@functools.cache
def int8_dot_saturates() -> bool:
    """True on an x86 CPU whose flags show no 32-bit int8 dot product (and on x86 whose flags
    cannot be read: then the older kernels are the safe assumption)."""
    if platform.machine().lower() not in X86:
        return False
    flags = cpu_flags()
    return flags is None or not (flags & WIDE_INT8_DOT)


def cpu_flags() -> frozenset[str] | None:
    """The instruction-set flags of the first CPU in /proc/cpuinfo; None where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def ort_channel_block() -> int:
    """The channel block of ONNX Runtime's float convolutions (MLAS NCHWc) on this CPU: 16 with
    AVX-512, else 8. Channel counts between multiples of it are padded up, so pruning to them saves
    MACs but little time: a detector pruned to 2x fewer MACs ran 1.12x faster with channels in
    multiples of 4 and 1.64x in multiples of 16 (AVX-512, benchmarks/detector_highway.py)."""
    flags = cpu_flags() or frozenset()
    return 16 if "avx512f" in flags else 8
