"""Every distillation loss against an independent (numpy, loop-by-loop) calculation on fixed
tensors, plus the properties the issue asks for: zero when features coincide, gradients reach the
student only, T^2 keeps the gradient scale, adapters bridge width mismatches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepshrink.distillation.losses import (
    LOSSES,
    ATLoss,
    CRDLoss,
    FitNetLoss,
    FSPLoss,
    KDLoss,
    MimicLoss,
    PKTLoss,
    RKDLoss,
    SPLoss,
    build_loss,
)
from deepshrink.distillation.taps import TapKind
from deepshrink.errors import ConfigError


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _huber(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return np.where(a < 1, 0.5 * x * x, a - 0.5)


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 10, generator=g) * 3, torch.randn(6, 10, generator=g) * 3, torch.tensor([0, 3, 9, 1, 1, 7])


# ---------------------------------------------------------------- KD (seed 001 eqs. 1-3)


def test_kd_at_t1_equals_cross_entropy_with_soft_targets(logits):
    s, t, _ = logits
    loss = KDLoss(temperature=1.0, alpha=0.0, beta=1.0)(s, t)
    q = np.exp(_log_softmax(_np(t)))
    expected = -(q * _log_softmax(_np(s))).sum(axis=1).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert loss.item() == pytest.approx(F.cross_entropy(s, F.softmax(t, dim=1)).item(), rel=1e-6)


def test_kd_combined_loss_is_eq1_with_softmax_t(logits):
    s, t, y = logits
    T, alpha, beta = 4.0, 0.3, 0.7
    loss = KDLoss(temperature=T, alpha=alpha, beta=beta)(s, t, y)
    ls, lt = _log_softmax(_np(s)), _log_softmax(_np(t) / T)
    hard = -ls[np.arange(6), y.numpy()].mean()
    soft = -(np.exp(lt) * _log_softmax(_np(s) / T)).sum(axis=1).mean()
    assert loss.item() == pytest.approx(alpha * hard + beta * T * T * soft, rel=1e-6)


def test_kd_t_squared_keeps_gradient_magnitude_across_temperatures():
    g = torch.Generator().manual_seed(2)
    s0, t = torch.randn(32, 10, generator=g) * 0.5, torch.randn(32, 10, generator=g) * 0.5
    norms, unscaled = {}, {}
    for T in (4.0, 8.0, 16.0):
        s = s0.clone().requires_grad_(True)
        KDLoss(temperature=T, alpha=0.0, beta=1.0)(s, t).backward()
        norms[T] = s.grad.norm().item()
        unscaled[T] = norms[T] / (T * T)
    assert max(norms.values()) / min(norms.values()) < 1.1  # scaled: nearly constant
    assert unscaled[4.0] / unscaled[16.0] > 14  # without T^2 it would shrink ~16x


def test_kd_errors_name_the_problem(logits):
    s, t, y = logits
    for bad in (0.0, -1.0):
        with pytest.raises(ConfigError, match=rf"temperature must be > 0, got {bad}"):
            KDLoss(temperature=bad)
    with pytest.raises(ConfigError, match=r"alpha=0.0, beta=0.0"):
        KDLoss(alpha=0.0, beta=0.0)
    with pytest.raises(ConfigError, match=r"student logits \[6, 10\] and teacher logits \[6, 100\]"):
        KDLoss()(s, torch.randn(6, 100), y)
    with pytest.raises(ConfigError, match="labels are required"):
        KDLoss(alpha=0.5)(s, t)


# ---------------------------------------------------------------- feature and relation losses


def _maps(seed: int, b=4, c=3, h=4, w=4) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_at_matches_loop_calculation():
    s, t = _maps(0, c=3), _maps(1, c=5)  # widths differ: attention sums them away
    expected = 0.0
    for i in range(4):
        a_s = (_np(s[i]) ** 2).mean(axis=0).ravel()
        a_t = (_np(t[i]) ** 2).mean(axis=0).ravel()
        expected += ((a_s / np.linalg.norm(a_s) - a_t / np.linalg.norm(a_t)) ** 2).sum()
    assert ATLoss()(s, t).item() == pytest.approx(expected / (4 * 16), rel=1e-5)


def test_sp_matches_gram_calculation():
    s, t = _maps(0, c=3), _maps(1, c=7)

    def gram(x):
        f = _np(x).reshape(4, -1)
        g = f @ f.T
        return g / np.linalg.norm(g, axis=1, keepdims=True)
    expected = ((gram(s) - gram(t)) ** 2).sum() / 16
    assert SPLoss()(s, t).item() == pytest.approx(expected, rel=1e-5)


def test_rkd_matches_triple_loop():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(5, 4, generator=g), torch.randn(5, 6, generator=g)

    def potentials(e):
        e = _np(e)
        n = len(e)
        d = np.array([[np.linalg.norm(e[i] - e[j]) for j in range(n)] for i in range(n)])
        d = d / (d.sum() / (n * (n - 1)))
        ang = np.zeros((n, n, n))
        for j in range(n):
            for i in range(n):
                for k in range(n):
                    u, v = e[i] - e[j], e[k] - e[j]
                    if i != j and k != j:
                        ang[j, i, k] = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
        return d, ang

    (ds, as_), (dt, at) = potentials(s), potentials(t)
    expected = 25 * _huber(ds - dt).mean() + 50 * _huber(as_ - at).mean()
    assert RKDLoss()(s, t).item() == pytest.approx(expected, rel=1e-5)


def test_fsp_matches_einsum_with_pooling():
    first_s, second_s = _maps(0, c=2, h=4, w=4), _maps(1, c=3, h=2, w=2)
    first_t, second_t = _maps(2, c=2, h=4, w=4), _maps(3, c=3, h=2, w=2)

    def fsp(a, b):
        a = _np(a).reshape(4, 2, 2, 2, 2, 2).mean(axis=(3, 5))  # 4x4 -> 2x2 average pool
        return np.einsum("bixy,bjxy->bij", a, _np(b)) / 4

    expected = ((fsp(first_s, second_s) - fsp(first_t, second_t)) ** 2).mean()
    loss = FSPLoss([2, 3], [2, 3])([first_s, second_s], [first_t, second_t])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_pkt_matches_kl_of_cosine_kernels():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 9, generator=g)

    def probs(e):
        e = _np(e)
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        k = (e @ e.T + 1) / 2
        return k / k.sum(axis=1, keepdims=True)

    ps, pt = probs(s), probs(t)
    expected = (pt * np.log((pt + 1e-7) / (ps + 1e-7))).mean()
    assert PKTLoss()(s, t).item() == pytest.approx(expected, rel=1e-4)


def _info_nce(anchor: np.ndarray, candidates: np.ndarray, t: float) -> float:
    """Mean cross-entropy of picking candidate i for anchor i (numpy, row by row)."""
    total = 0.0
    for i, a in enumerate(anchor):
        z = candidates @ a / t
        total += -(z[i] - np.log(np.exp(z - z.max()).sum()) - z.max())
    return total / len(anchor)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_crd_matches_symmetric_info_nce_with_its_queue():
    g = torch.Generator().manual_seed(8)
    first = torch.randn(5, 6, generator=g), torch.randn(5, 10, generator=g)
    second = torch.randn(5, 6, generator=g), torch.randn(5, 10, generator=g)
    loss = CRDLoss([(6,)], [(10,)], dim=4, queue=8, nce_t=0.5)
    ws, bs = _np(loss.embed_student[0].weight), _np(loss.embed_student[0].bias)
    wt, bt = _np(loss.embed_teacher[0].weight), _np(loss.embed_teacher[0].bias)

    def expected(s, t, queue_s, queue_t):
        zs, zt = _unit(_np(s) @ ws.T + bs), _unit(_np(t) @ wt.T + bt)
        value = (_info_nce(zs, np.concatenate([zt, queue_t]), 0.5) + _info_nce(zt, np.concatenate([zs, queue_s]), 0.5)) / 2
        return value, zs, zt

    empty = np.zeros((0, 4))
    value, zs, zt = expected(*first, empty, empty)
    assert loss(*first).item() == pytest.approx(value, rel=1e-5)  # no negatives beyond the batch yet
    assert int(loss.filled) == 5
    value, _, _ = expected(*second, zs, zt)
    assert loss(*second).item() == pytest.approx(value, rel=1e-5)  # the first batch is now in the queue
    assert int(loss.filled) == 8 and int(loss.cursor) == 2  # 10 embeddings went round an 8-slot queue
    loss.eval()
    loss(*first)
    assert int(loss.cursor) == 2  # evaluation never writes the queue


def test_crd_prefers_each_image_s_own_teacher_embedding():
    g = torch.Generator().manual_seed(9)
    teacher = torch.randn(16, 8, generator=g)
    loss = CRDLoss([(8,)], [(8,)], dim=8, queue=0, nce_t=0.1)
    with torch.no_grad():
        for head in (loss.embed_student[0], loss.embed_teacher[0]):
            head.weight.copy_(torch.eye(8))
            head.bias.zero_()
    matched = loss(teacher.clone(), teacher).item()
    shuffled = loss(teacher[torch.randperm(16, generator=g)], teacher).item()
    assert matched < 0.1 < shuffled


def test_fitnet_with_identity_regressor_is_mse():
    s, t = _maps(0, c=3), _maps(1, c=3)
    loss = FitNetLoss([(3, 4, 4)], [(3, 4, 4)])
    conv, bn = loss.regressors[0]
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    loss.eval()  # BN with its initial running stats (mean 0, var 1) is the identity up to eps
    expected = ((_np(s) / math.sqrt(1 + bn.eps) - _np(t)) ** 2).mean()
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-5)


def test_mimic_is_relative_squared_error_per_tap_with_nothing_learnt_at_equal_widths():
    student, teacher = [_maps(0, c=4, h=8, w=8), _maps(1, c=8, h=4, w=4)], [_maps(2, c=4, h=8, w=8), _maps(3, c=8, h=4, w=4)]
    loss = MimicLoss([(4, 8, 8), (8, 4, 4)], [(4, 8, 8), (8, 4, 4)])
    expected = sum(((_np(s) - _np(t)) ** 2).mean() / (_np(t) ** 2).mean() for s, t in zip(student, teacher))
    assert loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)
    assert not list(loss.parameters())  # a decomposed student must match the original features themselves
    assert loss([2 * s for s in student], [2 * t for t in teacher]).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["at", "sp", "rkd", "fsp", "pkt", "mimic"])
def test_zero_when_student_and_teacher_features_coincide(name):
    maps = [_maps(5, c=4, h=8, w=8), _maps(6, c=8, h=4, w=4)]
    feats = [m.flatten(1) for m in maps] if LOSSES.get(name).taps is TapKind.EMBEDDING else maps
    shapes = [tuple(f.shape[1:]) for f in feats]
    loss = build_loss(name, shapes, shapes)
    assert loss([f.clone() for f in feats], [f.clone() for f in feats]).item() == pytest.approx(0.0, abs=1e-9)


def _features_for(cls, width: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if cls.taps is TapKind.LOGITS:
        return [torch.randn(4, 10, generator=g)]
    if cls.taps is TapKind.EMBEDDING:
        return [torch.randn(4, width, generator=g)]
    return [torch.randn(4, width, 8, 8, generator=g), torch.randn(4, 2 * width, 4, 4, generator=g)]


@pytest.mark.parametrize("name", LOSSES.names())
def test_gradients_reach_the_student_only_even_across_widths(name):
    cls = LOSSES.get(name)
    student = [f.requires_grad_(True) for f in _features_for(cls, 4, 0)]  # pruned: half the channels
    teacher = [f.requires_grad_(True) for f in _features_for(cls, 8, 1)]
    loss = cls.build([tuple(f.shape[1:]) for f in student], [tuple(f.shape[1:]) for f in teacher])
    args = (student[0], teacher[0], torch.tensor([1, 2, 3, 4])) if cls.taps is TapKind.LOGITS else (student, teacher)
    value = loss(*args)
    value.backward()
    assert value.dim() == 0 and torch.isfinite(value) and value.item() > 0
    assert all(f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0 for f in student)
    assert all(f.grad is None for f in teacher)


def test_fitnet_adapter_learns_to_bridge_a_pruned_width():
    g = torch.Generator().manual_seed(7)
    student = torch.randn(16, 4, 6, 6, generator=g)
    teacher = torch.einsum("oc,bcxy->boxy", torch.randn(8, 4, generator=g), student)  # a 1x1 projection
    loss = FitNetLoss([(4, 6, 6)], [(8, 6, 6)])
    optimizer = torch.optim.Adam(loss.parameters(), lr=0.05)
    start = loss(student, teacher).item()
    for _ in range(60):
        optimizer.zero_grad()
        value = loss(student, teacher)
        value.backward()
        optimizer.step()
    assert value.item() < 0.02 * start


def test_feature_loss_errors():
    with pytest.raises(ConfigError, match="FSPLoss: needs at least 2 taps, got 1"):
        build_loss("fsp", [(4, 8, 8)], [(4, 8, 8)])
    with pytest.raises(ConfigError, match="ATLoss: 2 student taps but 1 teacher taps"):
        build_loss("at", [(4, 8, 8), (8, 4, 4)], [(4, 8, 8)])
    message = r"RKDLoss: unknown option 'margin' \(accepted: distance_weight, angle_weight\)"
    with pytest.raises(ConfigError, match=message):
        build_loss("rkd", [(4,)], [(4,)], margin=1.0)
    message = r"FitNetLoss: cannot regress student features \[4\] onto teacher features \[4, 2, 2\]"
    with pytest.raises(ConfigError, match=message):
        build_loss("fitnet", [(4,)], [(4, 2, 2)])
    with pytest.raises(ConfigError, match=r"CRDLoss: need dim >= 1, queue >= 0 and nce_t > 0, got 128, 4096, 0"):
        build_loss("crd", [(4,)], [(4,)], nce_t=0)
    with pytest.raises(ConfigError, match="SPLoss: got 2 student features and 1 teacher features"):
        SPLoss()([_maps(0), _maps(1)], [_maps(2)])
