"""ncnn export through pnnx: option-A CIFAR ResNets (whose strided-slice shortcuts ncnn lacks) are
rewritten on a copy, converted, loaded and checked against PyTorch; pruned models too; the pipeline
step reports size, top-1 and latency. Tests needing pnnx/ncnn skip cleanly without them."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import deepshrink
from deepshrink.errors import ConfigError, ExportError
from deepshrink.export import NcnnResult, export_ncnn, ncnn_latency_ms, run_ncnn
from deepshrink.export.ncnn_rewrite import pool_strided_slices
from deepshrink.models import create_model
from deepshrink.models.zoo import ChannelPadShortcut
from deepshrink.pruning import prune

SIZE = (3, 32, 32)
INSTALL = re.escape("pip install 'deepshrink[ncnn]'")


@pytest.fixture
def ncnn_installed() -> None:
    pytest.importorskip("pnnx")
    pytest.importorskip("ncnn")


def _resnet20() -> nn.Module:
    model = create_model("resnet20")
    with torch.no_grad():  # non-trivial BN statistics so eval mode differs from train mode
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, dict, NcnnResult]:
    pytest.importorskip("pnnx")
    pytest.importorskip("ncnn")
    torch.manual_seed(0)
    model = _resnet20()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    return model, before, export_ncnn(model, tmp_path_factory.mktemp("resnet20"))


def _layer_types(param: Path) -> list[str]:
    return [line.split()[0] for line in param.read_text().splitlines()[2:]]


class StridedSliceNet(nn.Module):
    """A user model with the option-A construct written in its forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(11, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 2, 3))
        y = torch.relu(self.conv(x)) + shortcut
        return self.fc(torch.cat([y.mean(dim=(2, 3)), x[..., ::2, ::2].mean(dim=(2, 3))], dim=1))


class TraceFrozenNet(nn.Module):
    """Reads a tensor value into Python: the trace bakes in the value seen at export time."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3))) * float(x.abs().sum())


def test_resnet20_option_a_exports_loads_and_matches_pytorch(exported) -> None:
    model, _, result = exported
    assert result.param_path.name == "model.ncnn.param" and result.bin_path.name == "model.ncnn.bin"
    assert result.bytes == result.param_path.stat().st_size + result.bin_path.stat().st_size
    assert 0.95 < result.bin_path.stat().st_size / (269_722 * 4) < 1.05  # FP32 weights (BN folded in)
    types = _layer_types(result.param_path)
    assert types.count("Pooling") == 3 and not any("." in t for t in types)  # 2 shortcuts + global pool
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4 and result.images == 4
    x = torch.randn(3, *SIZE)
    with torch.no_grad():
        expected = model.eval()(x)
    got = run_ncnn(result.param_path, result.bin_path, x)
    assert got.shape == (3, 10)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    meta = json.loads((result.param_path.parent / "model.ncnn.json").read_text())
    assert meta["input_size"] == list(SIZE) and meta["spec"]["arch"] == "resnet20"
    assert sorted(p.name for p in result.param_path.parent.iterdir()) == [
        "model.ncnn.bin", "model.ncnn.json", "model.ncnn.param"]  # no temporary directory left


def test_export_leaves_the_users_model_untouched(exported) -> None:
    model, before, _ = exported
    shortcuts = [m for m in model.modules() if isinstance(m, ChannelPadShortcut)]
    assert len(shortcuts) == 2 and not any(m.pool for m in shortcuts)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_export_keeps_the_training_flag(ncnn_installed, tmp_path: Path) -> None:
    model = create_model("resnet20").train()
    export_ncnn(model, tmp_path, check=False)
    assert all(m.training for m in model.modules())


def test_fpgm_pruned_resnet20_exports_and_matches(exported, tmp_path: Path) -> None:
    model, _, full = exported
    pruned = prune(model, torch.randn(2, *SIZE), criterion="fpgm", ratio=0.5).model
    result = export_ncnn(pruned, tmp_path)
    assert result.max_abs_diff < 1e-4
    params = sum(p.numel() for p in pruned.parameters())
    assert params < 0.6 * 269_722 and 0.95 < result.bin_path.stat().st_size / (4 * params) < 1.05
    assert result.bytes < 0.6 * full.bytes
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        expected = pruned.eval()(x)
    torch.testing.assert_close(run_ncnn(result.param_path, result.bin_path, x), expected, atol=1e-4, rtol=0)


def test_strided_slices_in_a_users_forward_become_kernel_1_pooling() -> None:
    model = StridedSliceNet().eval()
    rewritten = pool_strided_slices(copy.deepcopy(model), (3, 16, 16))
    targets = [n.target for n in rewritten.graph.nodes if n.op == "call_function"]
    assert targets.count(F.max_pool2d) == 2
    x = torch.randn(2, 3, 15, 16)  # odd height: both forms keep ceil(15 / 2) rows
    assert torch.equal(F.max_pool2d(x, kernel_size=1, stride=(2, 2)), x[:, :, ::2, ::2])
    with torch.no_grad():  # same pixels; only the summation order of the means may differ
        torch.testing.assert_close(rewritten(x), model(x), atol=1e-6, rtol=0)


def test_users_strided_slice_model_exports(ncnn_installed, tmp_path: Path) -> None:
    result = export_ncnn(StridedSliceNet(), tmp_path, (3, 16, 16))
    assert result.max_abs_diff < 1e-4 and "Pooling" in _layer_types(result.param_path)


def test_without_the_rewrite_pnnx_leaves_a_slice_and_the_error_names_it(
    ncnn_installed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain_copy = lambda model, size: copy.deepcopy(model).eval()  # noqa: E731
    monkeypatch.setattr("deepshrink.export.ncnn_export.ncnn_friendly", plain_copy)
    with pytest.raises(ExportError, match=r"pnnx could not lower every op of resnet20 to ncnn layers: "
                                          r"'Tensor\.slice_\d+' \(Tensor\.slice\).*step 2 is not supported"):
        export_ncnn(create_model("resnet20"), tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())  # nothing half-written


def test_a_mismatch_names_the_output_and_writes_nothing(ncnn_installed, tmp_path: Path) -> None:
    expected = (r"ncnn output 'out0' of TraceFrozenNet differs from PyTorch on random images: max abs diff .* "
                r"at image \d, element \[\d\] \(allowed 0.001 x logit scale")
    with pytest.raises(ExportError, match=expected):
        export_ncnn(TraceFrozenNet(), tmp_path, (3, 8, 8))
    assert not any(tmp_path.iterdir())


def test_labelled_data_batches_are_checked_and_give_top1(exported, tmp_path: Path) -> None:
    model, _, _ = exported
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(5, *SIZE, generator=generator), torch.randint(0, 10, (5,), generator=generator))
               for _ in range(2)]
    result = export_ncnn(model, tmp_path, data=batches)
    with torch.no_grad():
        hits = sum(int((model.eval()(x).argmax(1) == y).sum()) for x, y in batches)
    assert result.images == 14 and result.top1 == pytest.approx(100.0 * hits / 10)


def test_latency_and_the_export_verb(exported, tmp_path: Path) -> None:
    model, _, result = exported
    timing = ncnn_latency_ms(result.param_path, result.bin_path, SIZE, threads=1, warmup=1, repeats=3)
    assert timing.repeats == 3 and timing.threads == 1 and 0 < timing.median < 1000
    via_verb = deepshrink.export(model, tmp_path, format="ncnn", check=False)
    assert isinstance(via_verb, NcnnResult) and via_verb.max_abs_diff is None
    assert via_verb.bin_path.read_bytes() == result.bin_path.read_bytes()


@pytest.mark.parametrize("missing", ["pnnx", "ncnn"])
def test_missing_packages_say_how_to_install(missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import <missing>` raise ImportError
    with pytest.raises(ExportError, match=rf"not installed: [a-z, ]*\b{missing}\b.*{INSTALL}"):
        export_ncnn(create_model("resnet20"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


RECIPE = """\
name: tiny-ncnn
model: {name: digits_cnn, weights: null}
data: digits
seed: 0
steps:
  - export: {formats: [onnx, ncnn]}
"""


def test_recipe_with_ncnn_fails_validation_without_the_packages(tmp_path: Path, monkeypatch) -> None:
    from deepshrink.pipeline import load_recipe

    (tmp_path / "r.yaml").write_text(RECIPE)
    monkeypatch.setitem(sys.modules, "pnnx", None)
    with pytest.raises(ConfigError, match=rf"step 1 'export': formats: 'ncnn': .*{INSTALL}"):
        load_recipe(tmp_path / "r.yaml")


def test_pipeline_export_step_reports_ncnn(ncnn_installed, tmp_path: Path) -> None:
    from deepshrink.data import load_data
    from deepshrink.pipeline import compress

    (tmp_path / "r.yaml").write_text(RECIPE)
    report = compress(tmp_path / "r.yaml", out=tmp_path / "run", smoke=True)
    entry = report["deploy"]["export"]["ncnn"]
    assert Path(entry["param"]).is_file() and Path(entry["bin"]).parent == tmp_path / "run" / "final" / "ncnn"
    assert entry["max_abs_error_vs_torch"] < 1e-4 and entry["latency_ms_b1"] > 0
    test_images = min(2 * 256, len(load_data("digits").test))  # --smoke: at most two test batches
    assert entry["images_checked"] == 4 + test_images  # random images + the test batches
    assert abs(entry["top1"] - report["stages"][0]["top1"]) <= 0.2  # same images as the baseline
    assert "latency_ms_b1" in (tmp_path / "run" / "report.md").read_text()
