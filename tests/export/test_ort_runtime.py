from __future__ import annotations

import numpy as np
import pytest
import torch

from deepshrink.errors import ConfigError, ExportError
from deepshrink.export import export_onnx, onnx_latency_ms, ort_session, run_onnx, session_threads

SIZE = (3, 8, 8)


def test_session_records_threads_and_runs_tensors(cnn, tmp_path):
    path = export_onnx(cnn, tmp_path / "m.onnx", SIZE)
    session = ort_session(path, threads=1)
    assert session_threads(session) == 1
    assert session_threads(ort_session(path)) == torch.get_num_threads()
    out = run_onnx(session, torch.zeros(2, *SIZE, dtype=torch.float64))  # cast to float32
    assert out.dtype == np.float32 and out.shape == (2, 4)


def test_bad_paths_and_threads(tmp_path):
    with pytest.raises(ExportError, match="nope.onnx: ONNX file not found"):
        ort_session(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a graph")
    with pytest.raises(ExportError, match="junk.onnx: ONNX Runtime cannot load"):
        ort_session(junk)
    with pytest.raises(ConfigError, match="threads must be a positive integer"):
        ort_session(junk, threads=0)


def test_onnx_latency_reads_the_static_input_size(cnn, tmp_path):
    path = export_onnx(cnn, tmp_path / "m.onnx", SIZE)
    timing = onnx_latency_ms(path, 4, threads=1, warmup=1, repeats=5)
    assert timing.median > 0 and timing.p90 >= timing.median
    assert (timing.repeats, timing.threads, len(timing.samples)) == (5, 1, 5)
