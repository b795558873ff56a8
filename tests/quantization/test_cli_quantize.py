from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import deepshrink
from deepshrink.cli.main import main
from deepshrink.data import BatchLoader
from deepshrink.fileio import save_safetensors


@pytest.fixture(scope="module")
def digits_weights(tmp_path_factory):
    """digits_cnn fitted for a few Adam steps on the embedded digits (about 90 % test top-1)."""
    data = deepshrink.load_data("digits")
    model = deepshrink.create_model("digits_cnn")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(3):
        for x, y in BatchLoader(data.train, 64, train=True, augment=False, mean=data.mean, std=data.std):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    path = tmp_path_factory.mktemp("w") / "digits.safetensors"
    save_safetensors(model.state_dict(), path)
    return path


def test_cli_ptq_writes_model_onnx_and_metrics(digits_weights, tmp_path):
    out = tmp_path / "q"
    code = main(["quantize", "--model", "digits_cnn", "--weights", str(digits_weights), "--data", "digits",
                 "--observer", "mse", "--calibration-size", "256", "--no-latency", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fp32_top1"] > 80
    assert abs(metrics["fake_quant_top1"] - metrics["fp32_top1"]) <= 2.0
    assert abs(metrics["ort_int8_top1"] - metrics["fake_quant_top1"]) <= 0.5  # deployed matches simulated
    assert metrics["int8_kernel_share"] == 1.0
    assert metrics["int8_onnx_bytes"] < 0.35 * metrics["fp32_onnx_bytes"]
    assert json.loads((out / "quantize.json").read_text())["observer"] == "mse"
    reloaded = deepshrink.load(out)
    assert [t["kind"] for t in reloaded.deepshrink_spec.transforms] == ["fold_bn", "quantize"]
    assert deepshrink.evaluate(reloaded, "digits")["top1"] == pytest.approx(metrics["fake_quant_top1"])


def test_cli_qat_and_latency(digits_weights, tmp_path):
    out = tmp_path / "qat"
    code = main(["quantize", "--model", "digits_cnn", "--weights", str(digits_weights), "--data", "digits",
                 "--method", "qat", "--bits", "4", "--epochs", "1", "--limit-batches", "3", "--calibration-size", "64",
                 "--threads", "1", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["report"]["method"] == "qat" and len(metrics["report"]["qat_history"]) == 1
    assert (out / "train" / "checkpoint.pt").is_file()  # --resume continues from it after a kill
    assert set(metrics["latency_ms"]) == {"ort_fp32_b1", "ort_fp32_b64", "ort_int8_b1", "ort_int8_b64"}
    assert all(v > 0 for v in metrics["latency_ms"].values())


def test_cli_bad_options_fail_with_one_line(tmp_path, capsys):
    assert main(["quantize", "--model", "digits_cnn", "--data", "digits", "--bits", "9", "--out", str(tmp_path)]) == 2
    assert "bits: Input should be less than or equal to 8, got 9" in capsys.readouterr().err
    assert main(["quantize", "--model", "digits_cnn", "--data", "digits", "--keep-float", "head", "--out", str(tmp_path / "k")]) == 2
    assert "keep_float: 'head' matches no layer; layers: block1.conv, block2.conv, classifier" in capsys.readouterr().err
    assert main(["quantize", "--model", "digits_cnn", "--data", "digits", "--first-last-bits", "eight", "--out", str(tmp_path)]) == 2
    assert "--first-last-bits 'eight': expected an integer from 1 to 8, or 'none'" in capsys.readouterr().err
    assert main(["quantize", "--model", "digits_cnn", "--data", "digits", "--resume", "--out", str(tmp_path)]) == 2
    assert "--resume: only --method qat trains" in capsys.readouterr().err
    assert main(["quantize", "--model", "digits_cnn", "--data", "digits", "--distill-weight", "1", "--out", str(tmp_path)]) == 2
    assert "--distill-weight: only --method qat trains" in capsys.readouterr().err
    assert main(["quantize", "--model", "digits_cnn", "--data", "digits", "--progressive", "4", "--out", str(tmp_path)]) == 2
    assert "progressive: its stages are QAT runs; use method 'qat'" in capsys.readouterr().err


def test_cli_progressive_ladder_writes_each_stage_and_reloads(digits_weights, tmp_path):
    out = tmp_path / "prog"
    code = main(["quantize", "--model", "digits_cnn", "--weights", str(digits_weights), "--data", "digits",
                 "--method", "qat", "--bits", "2", "--weight-quantizer", "lsq_midrise", "--progressive", "4:1",
                 "--distill-weight", "1", "--epochs", "1", "--limit-batches", "3", "--calibration-size", "64", "--no-latency", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())["report"]
    assert [(s["bits"], s["weight"], len(s["qat_history"])) for s in report["progressive"]] == [(4, "lsq", 1)]
    assert report["weight"] == "lsq_midrise" and report["layer_bits"]["block2.conv"] == 2
    assert (out / "train" / "stage1-w4" / "checkpoint.pt").is_file()
    resolved = json.loads((out / "quantize.json").read_text())
    assert resolved["progressive"] == [{"bits": 4, "act_bits": None, "weight": "lsq", "epochs": 1}]
    assert resolved["advanced"]["distill_weight"] == 1.0
    reloaded = deepshrink.load(out)
    assert [t["kind"] for t in reloaded.deepshrink_spec.transforms] == ["fold_bn", "quantize"]  # the ladder's second fold finds nothing: not recorded


def test_cli_says_when_the_int8_graph_runs_slower_than_fp32(digits_weights, tmp_path, monkeypatch, capsys):
    import deepshrink.metrics.latency as latency

    monkeypatch.setattr(latency, "paired_latency_ms", lambda paths, *a, **k: {"ort_fp32": 1.0, "ort_int8": 2.0})
    code = main(["quantize", "--model", "digits_cnn", "--weights", str(digits_weights), "--data", "digits",
                 "--calibration-size", "64", "--limit-batches", "2", "--out", str(tmp_path / "q")])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0 and "the int8 graph ran 2.00x slower than FP32 at batch 64" in out and "saves" in out


def test_cli_latency_fallback_records_what_it_timed(digits_weights, tmp_path, monkeypatch):
    from deepshrink.quantization import fallback

    monkeypatch.setattr(fallback, "paired_latency_ms", _int8_slower_alone_and_in_the_graph)
    out = tmp_path / "fb"
    code = main(["quantize", "--model", "digits_cnn", "--weights", str(digits_weights), "--data", "digits",
                 "--calibration-size", "64", "--latency-fallback", "--threads", "1", "--no-latency", "--limit-batches", "2", "--out", str(out)])
    assert code == 0
    found = json.loads((out / "latency_fallback.json").read_text())
    convs = [layer["layer"] for layer in found["layers"]]
    assert convs and found["candidates"] == convs and found["keep_float"] == convs
    assert json.loads((out / "quantize.json").read_text())["advanced"]["latency_fallback"] is True
    assert json.loads((out / "metrics.json").read_text())["report"]["float_layers"] == convs


def _int8_slower_alone_and_in_the_graph(paths, *args, **kwargs):
    """Stub timings: every convolution slower in int8, and the whole graph faster without them."""
    return {"float": 1.0, "int8": 2.0} if "float" in paths else {"int8": 2.0, "fallback": 1.0}
