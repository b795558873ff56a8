from __future__ import annotations

import json
import re

import pytest
import torch

import deepshrink
from deepshrink.errors import ConfigError, ModelError
from deepshrink.quantization import ACT_QUANTIZERS, OBSERVERS, WEIGHT_QUANTIZERS, Advanced, QuantizeConfig
from deepshrink.quantization.primitives import QuantGrid
from quant_models import normalized

TRAIN = {"epochs": 4, "lr": 0.01, "batch_size": 32, "optimizer": "adamw", "weight_decay": 0.0, "progress": False}


@pytest.mark.parametrize("name", WEIGHT_QUANTIZERS.names())
@pytest.mark.parametrize("bits", [2, 4])
def test_weight_quantizer_trains_and_deploys_exactly(name, bits):
    w = torch.randn(6, 4, 3, 3) * torch.linspace(0.1, 1, 6).view(-1, 1, 1, 1)
    quant = WEIGHT_QUANTIZERS.get(name)(bits, 6)
    quant.init(w)
    w = w.clone().requires_grad_(True)
    quant.train()
    out = quant(w)
    (out * torch.randn_like(out)).sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0  # the STE lets gradients through
    quant.eval()
    codes, scale = quant.integer(w.detach())
    torch.testing.assert_close(codes.float() * scale.view(-1, 1, 1, 1), quant(w.detach()), rtol=0, atol=1e-6)
    levels = codes.unique().numel()
    assert levels <= 2 ** quant.bits
    assert codes.abs().max() <= 2 ** quant.bits - 1


@pytest.mark.parametrize(("bits", "codes"), [(2, (-1, 1)), (3, (-3, 3)), (4, (-7, 7)), (7, (-63, 63)), (8, (-127, 127))])
def test_weight_grids_are_narrow_and_symmetric(bits, codes):
    # symmetric about zero at every width (the whole signed range measured worse at 2 bits)
    quant = WEIGHT_QUANTIZERS.get("lsq")(bits, 4)
    w = torch.randn(4, 3, 3, 3) * 10
    quant.init(w)
    quant.scale.data.fill_(w.abs().max().item() / 2 ** (bits - 1) / 4)  # a step that clips both ends
    values, _ = quant.integer(w)
    assert (values.min().item(), values.max().item()) == codes


def test_midrise_grid_keeps_four_levels_at_two_bits_and_fits_weights_closer():
    w = torch.randn(8, 16, 3, 3, generator=torch.Generator().manual_seed(0))
    midrise, narrow = WEIGHT_QUANTIZERS.get("lsq_midrise")(2, 8), WEIGHT_QUANTIZERS.get("lsq")(2, 8)
    midrise.init(w)
    narrow.init(w)
    codes, scale = midrise.integer(w)
    assert codes.unique().tolist() == [-3, -1, 1, 3]  # every level used, none at zero
    torch.testing.assert_close(codes.float() * scale.view(-1, 1, 1, 1), midrise(w).detach(), rtol=0, atol=0)
    # unit Gaussian weights: the best uniform 4-level grid has MSE 0.119, the 3-level one about 0.19
    err_midrise, err_narrow = (midrise(w) - w).pow(2).mean().item(), (narrow(w) - w).pow(2).mean().item()
    assert err_midrise < 0.14 and err_midrise < 0.75 * err_narrow


def test_midrise_step_receives_the_lsq_gradient():
    quant = WEIGHT_QUANTIZERS.get("lsq_midrise")(2, 1, per_channel=False)
    quant.scale.data.fill_(1.0)
    w = torch.tensor([0.3, 2.5, 10.0])  # codes 1, 3 (inside: d/ds = code - w/s) and 3 (clipped: d/ds = code)
    quant(w).sum().backward()
    factor = 1 / (3 * 3) ** 0.5  # LSQ's 1 / sqrt(N * Q_p), N = 3 weights, Q_p = 3
    torch.testing.assert_close(quant.scale.grad, torch.tensor(((1 - 0.3) + (3 - 2.5) + 3) * factor))


@pytest.mark.parametrize(("options", "field"), [({"bits": 8}, "bits"), ({"bits": 2, "layer_bits": {"conv2": 7}}, "layer_bits['conv2']")])
def test_midrise_beyond_six_bits_is_a_config_error(options, field):
    with pytest.raises(ConfigError, match=rf"{re.escape(field)}: weight quantizer 'lsq_midrise' .* at most 6 bits"):
        QuantizeConfig(method="qat", weight="lsq_midrise", **options)


@pytest.mark.parametrize("name", ACT_QUANTIZERS.names())
def test_activation_quantizer_calibrates_and_passes_gradients(name):
    x = torch.relu(torch.randn(8, 4, 5, 5))
    quant = ACT_QUANTIZERS.get(name)(4)
    quant.begin_calibration(OBSERVERS.get("minmax")(quant.grid, Advanced()))
    assert torch.equal(quant(x), x)  # calibrating: identity
    quant.end_calibration()
    assert not quant.signed  # non-negative data: an unsigned grid
    quant.train()
    x = x.clone().requires_grad_(True)
    y = quant(x)
    y.sum().backward()
    assert x.grad.abs().sum() > 0
    quant.eval()
    scale, zero_point = quant.deploy_params()
    codes = (quant(x.detach()) / scale + zero_point).round()
    assert codes.unique().numel() <= quant.grid.levels
    torch.testing.assert_close(quant(x.detach()), (codes - zero_point) * scale, rtol=0, atol=1e-5)


def test_lsq_step_sizes_are_learned_by_the_training_engine(trained, bundle):
    options = {"first_last_bits": None, "train": TRAIN, "advanced": {"keep_calibrated": False}}  # always the trained one
    result = deepshrink.quantize(trained, bundle, method="qat", bits=2, config=options)
    steps = {n: p for n, p in result.model.named_parameters() if n.endswith("scale")}
    assert len(steps) >= 4 and len(result.report["qat_history"]) == 4
    start = deepshrink.quantize(trained, bundle, method="qat", bits=2, config={"first_last_bits": None, "train": {**TRAIN, "epochs": 0}})
    moved = [n for n, p in steps.items() if not torch.allclose(p, dict(start.model.named_parameters())[n])]
    assert moved  # the engine's optimiser updated them


@pytest.mark.parametrize("weight, activation", [("lsq", "lsq"), ("lsq_midrise", "lsq"), ("dorefa", "pact"), ("minmax", "observer")])
def test_w2a2_qat_recovers_accuracy_lost_by_ptq(trained, bundle, weight, activation):
    x, y = normalized(bundle.test)
    options = {"bits": 2, "first_last_bits": None}
    ptq = deepshrink.quantize(trained, bundle, bits=2, config={"first_last_bits": None}).model
    qat = deepshrink.quantize(trained, bundle, config={**options, "method": "qat", "weight": weight, "activation": activation, "train": TRAIN}).model
    with torch.no_grad():
        ptq_top1 = (ptq(x).argmax(1) == y).float().mean()
        qat_top1 = (qat(x).argmax(1) == y).float().mean()
    # min-max weights with observer ranges, the weakest pair, reached 0.75 on one CPU and 0.8+ on others
    assert ptq_top1 < 0.8 and qat_top1 >= max(0.7, ptq_top1 + 0.15)


@pytest.mark.parametrize("weight, activation", [("bwn", "binary"), ("twn", "lsq")])
@pytest.mark.usefixtures("full_int8_range")
def test_binary_and_ternary_networks_train(trained, bundle, weight, activation):
    x, y = normalized(bundle.test)
    result = deepshrink.quantize(trained, bundle, config={"method": "qat", "weight": weight, "activation": activation, "train": TRAIN})
    assert result.report["layer_bits"] == {"conv1": 8, "conv2": 1 if weight == "bwn" else 2, "fc": 8}
    with torch.no_grad():
        assert (result.model(x).argmax(1) == y).float().mean() >= 0.9
        codes, _ = result.model.conv2.weight_quant.integer(result.model.conv2.weight)
    assert set(codes.unique().tolist()) <= {-1, 0, 1}


def test_distillation_from_the_float_model_is_an_option(trained, bundle):
    config = {"method": "qat", "bits": 4, "train": {**TRAIN, "epochs": 1}, "advanced": {"distill_weight": 1.0}}
    result = deepshrink.quantize(trained, bundle, config=config)
    assert result.report["qat_history"][0]["train_loss"] > 0


def test_binary_grid_of_xnor_inputs_is_sign_with_scale():
    quant = ACT_QUANTIZERS.get("binary")(1, signed=True)
    quant.scale.data.fill_(0.5)
    quant.eval()
    assert quant(torch.tensor([-2.0, -0.1, 0.0, 3.0])).tolist() == [-0.5, -0.5, 0.5, 0.5]
    assert quant.grid == QuantGrid(1, signed=True, symmetric=True)


def test_qat_that_lowers_validation_accuracy_returns_the_calibrated_model(trained, bundle):
    wrecking = {**TRAIN, "epochs": 1, "lr": 50.0, "optimizer": "sgd", "grad_clip": None}
    start = deepshrink.quantize(trained, bundle, config={"method": "qat", "bits": 8, "train": {**wrecking, "epochs": 0}})
    kept = deepshrink.quantize(trained, bundle, config={"method": "qat", "bits": 8, "train": wrecking})
    last = kept.report["qat_history"][-1]
    assert last["kept_calibrated"] and last["val_top1_trained"] < last["val_top1_calibrated"]
    x, _ = normalized(bundle.test)
    with torch.no_grad():
        torch.testing.assert_close(kept.model(x), start.model(x))  # the calibrated starting point, untouched
    trained_anyway = deepshrink.quantize(trained, bundle, config={
        "method": "qat", "bits": 8, "train": wrecking, "advanced": {"keep_calibrated": False}})
    with torch.no_grad():
        assert not torch.allclose(trained_anyway.model(x), start.model(x))


class _CrashInSecondEpoch:
    def __init__(self) -> None:
        self.epochs = 0

    def on_epoch_start(self, state) -> None:
        self.epochs += 1
        if self.epochs == 2:  # the first epoch's checkpoint is on disk by now
            raise KeyboardInterrupt


@pytest.mark.parametrize("qat_batchnorm", [False, True])
def test_qat_killed_mid_run_resumes_from_its_checkpoint_to_the_same_model(trained, bundle, tmp_path, monkeypatch,
                                                                         qat_batchnorm):
    from deepshrink import training

    config = {"method": "qat", "bits": 4, "train": {**TRAIN, "epochs": 2},
              "advanced": {"keep_calibrated": False, "qat_batchnorm": qat_batchnorm}}
    reference = deepshrink.quantize(trained, bundle, config=config).model
    real_train = training.train
    monkeypatch.setattr(training, "train", lambda *a, **k: real_train(*a, callbacks=[_CrashInSecondEpoch()], **k))
    with pytest.raises(KeyboardInterrupt):
        deepshrink.quantize(trained, bundle, config=config, train_dir=tmp_path)
    assert training.load_checkpoint(tmp_path / training.CHECKPOINT_FILE)["epoch"] == 1
    counter = _CrashInSecondEpoch()
    counter.epochs = -10  # counts without crashing
    monkeypatch.setattr(training, "train", lambda *a, **k: real_train(*a, callbacks=[counter], **k))
    resumed = deepshrink.quantize(trained, bundle, config=config, train_dir=tmp_path, resume=True)
    assert counter.epochs == -9  # only the second epoch ran
    assert [r["epoch"] for r in resumed.report["qat_history"]] == [1, 2]
    x, _ = normalized(bundle.test)
    with torch.no_grad():
        torch.testing.assert_close(resumed.model(x), reference(x), rtol=0, atol=0)


def test_resuming_qat_under_other_quantisation_settings_is_refused_by_field(trained, bundle, tmp_path):
    config = {"method": "qat", "bits": 4, "train": {**TRAIN, "epochs": 1}}
    deepshrink.quantize(trained, bundle, config=config, train_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"act_bits: the QAT checkpoint in .* was trained with act_bits=4, this run has act_bits=2"):
        deepshrink.quantize(trained, bundle, config={**config, "bits": 2}, train_dir=tmp_path, resume=True)
    with pytest.raises(ConfigError, match=r"advanced\.qat_batchnorm: .* with advanced\.qat_batchnorm=False"):
        deepshrink.quantize(trained, bundle, config={**config, "advanced": {"qat_batchnorm": True}}, train_dir=tmp_path,
                            resume=True)


def test_checkpoints_from_before_a_setting_existed_resume_under_its_default(trained, bundle, tmp_path):
    config = {"method": "qat", "bits": 4, "train": {**TRAIN, "epochs": 1}}
    deepshrink.quantize(trained, bundle, config=config, train_dir=tmp_path)
    saved_path = tmp_path / "quantize_config.json"
    saved = json.loads(saved_path.read_text())
    del saved["advanced.latency_fallback"]  # as written by a DeepShrink without that setting
    saved_path.write_text(json.dumps(saved))
    deepshrink.quantize(trained, bundle, config=config, train_dir=tmp_path, resume=True)
    saved_path.write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=r"advanced\.latency_fallback: .* trained with advanced\.latency_fallback=False, "
                                          r"this run has advanced\.latency_fallback=True"):
        deepshrink.quantize(trained, bundle, config={**config, "advanced": {"latency_fallback": True}},
                            train_dir=tmp_path, resume=True)


def test_progressive_quantisation_starts_from_the_higher_bit_models_latent_weights(trained, bundle):
    x, y = normalized(bundle.test)
    config = {"method": "qat", "first_last_bits": None, "train": TRAIN, "advanced": {"keep_calibrated": False}}
    w4 = deepshrink.quantize(trained, bundle, bits=4, config=config)
    latent = deepshrink.quantization.latent_float_model(w4.model, trained)
    trained_conv = dict(w4.model.named_parameters())["conv2.weight"]
    assert torch.equal(latent.conv2.weight, trained_conv) and latent.conv2.weight is not trained_conv
    assert not any(n.endswith("scale") for n, _ in latent.named_parameters())  # a float model: no quantisers
    w2 = deepshrink.quantize(latent, bundle, bits=2, config=config, teacher=trained)
    with torch.no_grad():
        assert (w2.model(x).argmax(1) == y).float().mean() >= 0.8
    assert w2.report["layer_bits"]["conv2"] == 2


def test_latent_weights_of_an_untrained_quantisation_are_the_folded_float_model(trained, bundle):
    x, _ = normalized(bundle.test)
    untrained = deepshrink.quantize(trained, bundle, method="qat", bits=4, config={"train": {**TRAIN, "epochs": 0}})
    latent = deepshrink.quantization.latent_float_model(untrained.model, trained)
    with torch.no_grad():
        torch.testing.assert_close(latent(x), deepshrink.quantization.fold_bn(trained)(x), rtol=0, atol=0)


def test_latent_weights_from_another_models_quantisation_are_refused(trained, bundle):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    quantized = deepshrink.quantize(trained, bundle, bits=8).model
    with pytest.raises(ModelError, match=r"tensor '0.weight'.*was it quantised from this model"):
        deepshrink.quantization.latent_float_model(quantized, other)


@pytest.mark.parametrize(("options", "message"), [
    ({"method": "ptq", "progressive": [4]}, r"progressive: its stages are QAT runs; use method 'qat'"),
    ({"bits": 4, "progressive": [4]}, r"progressive: each stage needs more bits than the next and than bits=4, got \[4\]"),
    ({"bits": 2, "progressive": [3, 4]}, r"progressive: each stage needs more bits .* got \[3, 4\]"),
    ({"bits": 2, "progressive": ["4:x"]}, r"progressive\.0: expected BITS or BITS:EPOCHS .* got '4:x'"),
    ({"bits": 2, "progressive": [{"bits": 4, "weight": "bwn"}]}, r"progressive\.0: weight quantizer 'bwn' is 1-bit"),
    ({"bits": 2, "progressive": [9]}, r"progressive\.0\.bits: Input should be less than or equal to 8"),
])
def test_bad_progressive_ladders_are_config_errors_naming_the_stage(options, message):
    with pytest.raises(ConfigError, match=message):
        QuantizeConfig(**{"method": "qat", **options})


def test_progressive_stage_shorthands_and_settings():
    config = QuantizeConfig(method="qat", bits=2, weight="lsq_midrise", progressive=[6, "4:3"], layer_bits={"conv2": 3},
                            train={**TRAIN, "epochs": 30}, advanced={"latency_fallback": True, "distill_weight": 1.0})
    six, four = (config.stage(stage) for stage in config.progressive)
    assert (six.bits, six.act_bits, six.train.epochs, four.bits, four.train.epochs) == (6, 6, 30, 4, 3)
    assert six.weight.value == four.weight.value == "lsq"  # the mid-rise grid is the 2-bit stage's
    assert four.layer_bits == {} and not four.advanced.latency_fallback and four.advanced.distill_weight == 1.0


def test_one_progressive_call_runs_the_two_call_ladder(trained, bundle):
    x, _ = normalized(bundle.test)
    config = {"method": "qat", "first_last_bits": None, "train": TRAIN, "advanced": {"keep_calibrated": False}}
    w4 = deepshrink.quantize(trained, bundle, bits=4, config=config)
    by_hand = deepshrink.quantize(deepshrink.quantization.latent_float_model(w4.model, trained), bundle, bits=2,
                                  config=config, teacher=trained)
    ladder = deepshrink.quantize(trained, bundle, bits=2, config={**config, "progressive": [4]})
    with torch.no_grad():
        torch.testing.assert_close(ladder.model(x), by_hand.model(x), rtol=0, atol=0)
    [stage] = ladder.report["progressive"]
    assert (stage["bits"], stage["act_bits"], len(stage["qat_history"])) == (4, 4, TRAIN["epochs"])
    assert ladder.report["layer_bits"]["conv2"] == 2


def test_a_progressive_ladder_resumes_and_refuses_another_ladder(trained, bundle, tmp_path):
    x, _ = normalized(bundle.test)
    config = {"method": "qat", "bits": 2, "progressive": ["4:1"], "train": {**TRAIN, "epochs": 1}}
    first = deepshrink.quantize(trained, bundle, config=config, train_dir=tmp_path)
    assert (tmp_path / "stage1-w4" / "checkpoint.pt").is_file() and (tmp_path / "checkpoint.pt").is_file()
    again = deepshrink.quantize(trained, bundle, config=config, train_dir=tmp_path, resume=True)  # nothing left to train
    with torch.no_grad():
        torch.testing.assert_close(again.model(x), first.model(x), rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"progressive: the QAT checkpoint in .* was trained with progressive="):
        deepshrink.quantize(trained, bundle, config={**config, "progressive": ["3:1"]}, train_dir=tmp_path, resume=True)
    assert not (tmp_path / "stage1-w3").exists()  # refused before any stage trained
