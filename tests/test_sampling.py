"""inferlab.kernels.sample: greedy, filters, the drawn distribution, RNG reproducibility across devices."""
from __future__ import annotations

import math

import numpy as np
import pytest

import inferlab
from inferlab import kernels as K
from inferlab import reference as R

from conftest import CUDA, DEVICES, MODEL_SHAPES

VOCABS = [pytest.param(MODEL_SHAPES[m]["vocab"], id=m) for m in MODEL_SHAPES] + [pytest.param(1, id="V1"),
                                                                                pytest.param(97, id="V97")]

# Filter settings exercised everywhere (temperatures are powers of two where exact boundaries matter).
SETTINGS = [
    pytest.param(dict(temperature=1.0), id="plain"),
    pytest.param(dict(temperature=0.5, top_k=7), id="top_k"),
    pytest.param(dict(temperature=1.0, top_p=0.8), id="top_p"),
    pytest.param(dict(temperature=2.0, min_p=0.1), id="min_p"),
    pytest.param(dict(temperature=1.0, top_k=12, top_p=0.9, min_p=0.02), id="all"),
    pytest.param(dict(temperature=1.0, repetition_penalty=1.5, prev=True), id="penalty"),
    pytest.param(dict(temperature=0.5, top_k=10, top_p=0.85, repetition_penalty=1.3, prev=True), id="penalty+filters"),
]


def _split(setting, rng, V):
    s = dict(setting)
    prev = None
    if s.pop("prev", False):
        prev = rng.choice(V, size=min(V, 8), replace=False).astype(np.int32)
        prev = np.concatenate([prev, prev[:3], [-1]]).astype(np.int32)  # duplicates and a padding entry
    return s, prev


def _mid_gap(values, target):
    """A value near target that lies in the middle of the gap between two neighbouring `values`."""
    v = np.unique(np.concatenate([[0.0, 1.0], np.asarray(values, dtype=np.float64)]))
    i = int(np.clip(np.searchsorted(v, target), 1, len(v) - 1))
    return float((v[i - 1] + v[i]) / 2)


def _robust(setting, logits, prev):
    """Moves top_p / min_p to the middle of their gaps, so float32 vs float64 cannot change the kept set."""
    s = dict(setting)
    base = dict(s, top_p=1.0, min_p=0.0)
    p = R.sample_probs(logits, prev_tokens=prev, **base)[0]
    if s.get("top_p", 1.0) < 1.0:
        cum = np.cumsum(np.sort(p)[::-1])
        s["top_p"] = _mid_gap(cum, s["top_p"])
        p = R.sample_probs(logits, prev_tokens=prev, **dict(s, min_p=0.0))[0]
    if s.get("min_p", 0.0) > 0.0:
        s["min_p"] = _mid_gap(p[p > 0] / p.max(), s["min_p"])
    return s


def _logits(rng, V, scale=2.0):
    return (rng.standard_normal(V) * scale).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# greedy
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("V", VOCABS)
def test_greedy_is_argmax(device, V, rng):
    B = 4
    logits = (rng.standard_normal((B, V)) * 3).astype(np.float32)
    if V > 3:  # exact ties at the maximum: the lowest index wins
        j = np.sort(rng.choice(V, size=3, replace=False))
        logits[1, j] = logits[1].max() + 1.0
    got = K.sample(logits, device=device, seed=int(rng.integers(1 << 62)))
    np.testing.assert_array_equal(got, np.argmax(logits, axis=1))
    if V > 3:
        assert got[1] == j[0]


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_with_penalty_and_special_values(device, rng):
    V = 5000
    logits = _logits(rng, V, 3.0)
    top2 = np.argsort(logits)[::-1][:2]
    # penalising the winner (positive logit -> divided) hands the win to a different token
    logits[top2[0]] = abs(logits[top2[0]]) + 1.0
    logits[top2[1]] = logits[top2[0]] - 0.01
    ref = int(np.argmax(R.sample_probs(logits, repetition_penalty=2.0, prev_tokens=[top2[0]])[0]))
    assert ref != top2[0]
    assert K.sample(logits, repetition_penalty=2.0, prev_tokens=[top2[0]], device=device) == ref
    # -inf is never chosen; +inf always; nan is ignored
    x = _logits(rng, V)
    x[10] = np.nan
    x[:5] = -np.inf
    assert K.sample(x, device=device) == int(np.nanargmax(x))
    x[123] = np.inf
    assert K.sample(x, temperature=1.0, device=device) == 123
    assert K.sample(x, device=device) == 123


# ---------------------------------------------------------------------------------------------
# filters keep the allowed set
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("setting", SETTINGS)
def test_draws_stay_in_the_allowed_set(device, setting, rng):
    V, B = 800, 4000
    logits = _logits(rng, V, 2.5)
    s, prev = _split(setting, rng, V)
    s = _robust(s, logits, prev)
    probs = R.sample_probs(logits, prev_tokens=prev, **s)[0]
    allowed = probs > 0
    tokens = K.sample(np.tile(logits, (B, 1)), prev_tokens=prev, seed=int(rng.integers(1 << 62)), device=device, **s)
    assert tokens.shape == (B,) and tokens.dtype == np.int32
    outside = tokens[~allowed[tokens]]
    assert outside.size == 0, f"{outside.size} draws outside the {allowed.sum()} allowed tokens: {outside[:10]}"
    if s.get("top_k"):
        assert allowed.sum() <= s["top_k"]
    if (probs > 0.01).sum() > 1:
        assert np.unique(tokens).size > 1  # it does sample


def test_top_k_keeps_ties_at_the_boundary():
    logits = np.array([5.0, 1.0, 3.0, 3.0, 0.0, 3.0], dtype=np.float32)
    p = R.sample_probs(logits, temperature=1.0, top_k=2)[0]
    assert (p > 0).tolist() == [True, False, True, True, False, True]
    tokens = K.sample(np.tile(logits, (3000, 1)), temperature=1.0, top_k=2, seed=1)
    assert set(np.unique(tokens)) == {0, 2, 3, 5}


# ---------------------------------------------------------------------------------------------
# the drawn distribution
# ---------------------------------------------------------------------------------------------

def _chi2_critical(df: int, z: float = 4.753) -> float:
    """Upper critical value of chi-square(df) at one-sided normal quantile z (Wilson-Hilferty); z=4.753: p=1e-6."""
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + z * math.sqrt(c)) ** 3


def _chi_square(counts, probs):
    n = counts.sum()
    exp = probs * n
    big = exp >= 5
    obs_cells = list(counts[big]) + ([counts[~big].sum()] if (~big).any() else [])
    exp_cells = list(exp[big]) + ([exp[~big].sum()] if (~big).any() else [])
    obs_cells, exp_cells = np.array(obs_cells, float), np.array(exp_cells, float)
    keep = exp_cells > 0
    stat = float(((obs_cells[keep] - exp_cells[keep]) ** 2 / exp_cells[keep]).sum())
    return stat, int(keep.sum()) - 1


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("setting", SETTINGS)
def test_chi_square_matches_filtered_distribution(device, setting, rng):
    V, N = 40, 100_000
    logits = _logits(rng, V, 1.5)
    s, prev = _split(setting, rng, V)
    s = _robust(s, logits, prev)
    probs = R.sample_probs(logits, prev_tokens=prev, **s)[0]
    tokens = K.sample(np.tile(logits, (N, 1)), prev_tokens=prev, seed=int(rng.integers(1 << 62)),
                      offset=int(rng.integers(1 << 40)), device=device, **s)
    counts = np.bincount(tokens, minlength=V)
    assert counts[probs == 0].sum() == 0
    stat, df = _chi_square(counts, probs)
    if df >= 1:
        assert stat < _chi2_critical(df), f"chi-square {stat:.1f} with {df} dof (critical {_chi2_critical(df):.1f})"


@pytest.mark.parametrize("device", DEVICES)
def test_offsets_give_independent_draws(device, rng):
    # one row, successive decode steps (offset) instead of rows
    V, N = 6, 3000
    logits = _logits(rng, V, 0.5)
    seed = int(rng.integers(1 << 62))
    la = inferlab.DeviceArray.from_numpy(logits[None], device)
    tokens = np.array([int(K.sample(la, temperature=1.0, seed=seed, offset=o).numpy()[0]) for o in range(N)])
    probs = R.sample_probs(logits, temperature=1.0)[0]
    stat, df = _chi_square(np.bincount(tokens, minlength=V), probs)
    assert stat < _chi2_critical(df)


# ---------------------------------------------------------------------------------------------
# reproducibility
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_same_tokens(device, rng):
    logits = (rng.standard_normal((64, 3000)) * 2).astype(np.float32)
    kw = dict(temperature=1.0, top_p=0.95, seed=int(rng.integers(1 << 62)), offset=17)
    a = K.sample(logits, device=device, **kw)
    b = K.sample(logits, device=device, **kw)
    np.testing.assert_array_equal(a, b)
    c = K.sample(logits, device=device, **dict(kw, seed=kw["seed"] + 1))
    d = K.sample(logits, device=device, **dict(kw, offset=18))
    assert (a != c).any() and (a != d).any()


@pytest.mark.parametrize("setting", SETTINGS)
def test_cpu_matches_reference_draws(setting, rng):
    """The reference draws with the same Philox bits; only exact float boundaries could differ."""
    B, V = 300, 2000
    logits = (rng.standard_normal((B, V)) * 2).astype(np.float32)
    s, prev = _split(setting, rng, V)
    seed, offset = int(rng.integers(1 << 62)), int(rng.integers(1 << 40))
    got = K.sample(logits, prev_tokens=prev, seed=seed, offset=offset, **s)
    ref = R.sample(logits, prev_tokens=prev, seed=seed, offset=offset, **s)
    assert (got != ref).mean() <= 0.01, f"{(got != ref).sum()} of {B} draws differ from the reference"


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("setting", SETTINGS + [pytest.param(dict(temperature=0.0), id="greedy"),
                                                pytest.param(dict(temperature=0.7, top_k=50, top_p=0.9), id="odd-T")])
@pytest.mark.parametrize("V", [pytest.param(MODEL_SHAPES["qwen2.5-0.5b"]["vocab"], id="qwen-vocab"),
                               pytest.param(MODEL_SHAPES["smollm2-135m"]["vocab"], id="smollm-vocab"),
                               pytest.param(97, id="V97")])
def test_cpu_and_cuda_pick_the_same_tokens(setting, V, rng):
    B = 48
    logits = (rng.standard_normal((B, V)) * 3).astype(np.float32)
    s, prev = _split(setting, rng, V)
    prev_b = None if prev is None else np.tile(prev, (B, 1))
    kw = dict(s, seed=int(rng.integers(1 << 62)), offset=int(rng.integers(1 << 40)), prev_tokens=prev_b)
    np.testing.assert_array_equal(K.sample(logits, device="cpu", **kw), K.sample(logits, device="cuda", **kw))


def test_philox_known_answers():
    kat = [
        ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
         [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
    ]
    for ctr, key, want in kat:
        assert list(inferlab._core.kernels._philox4x32_10(ctr, key)) == want
        assert R.philox4x32_10(ctr, key) == want
    for seed, offset, row in [(0, 0, 0), (2**64 - 1, 2**63 + 5, 7), (1234, 99, 65535)]:
        assert inferlab._core.kernels._random_bits(seed, offset, row) == R.random_bits(seed, offset, row)


def test_penalty_ignores_duplicates_and_padding(rng):
    V = 300
    logits = (rng.standard_normal((500, V)) * 2).astype(np.float32)
    kw = dict(temperature=1.0, repetition_penalty=1.7, seed=5)
    a = K.sample(logits, prev_tokens=np.tile([3, 7, 11], (500, 1)), **kw)
    b = K.sample(logits, prev_tokens=np.tile([3, 7, 7, 11, 3, -1, -5, V + 10], (500, 1)), **kw)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_bad_arguments(device):
    x = np.zeros((2, 10), np.float32)
    bad = [
        (dict(temperature=-1.0), "temperature"), (dict(temperature=float("nan")), "temperature"),
        (dict(top_k=-1), "top_k"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"),
        (dict(min_p=-0.1), "min_p"), (dict(min_p=2.0), "min_p"), (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(seed=-1), "seed"), (dict(prev_tokens=np.zeros((3, 4), np.int32)), "prev_tokens"),
        (dict(prev_tokens=np.zeros((2, 4), np.float32)), "prev_tokens"),
    ]
    for kw, name in bad:
        with pytest.raises(ValueError, match=name):
            K.sample(x, device=device, **kw)
    with pytest.raises(ValueError, match="logits has dtype float16"):
        K.sample(x.astype(np.float16), device=device)
    with pytest.raises(ValueError, match="logits"):
        K.sample(np.zeros((2, 3, 4), np.float32), device=device)
    with pytest.raises(ValueError, match="V"):
        K.sample(np.zeros((1, 0), np.float32), device=device)


def test_scalar_and_batch_forms(rng):
    x = _logits(rng, 50)
    t = K.sample(x)
    assert isinstance(t, int) and t == int(np.argmax(x))
    assert K.sample(x[None]).tolist() == [t]
    d = K.sample(inferlab.DeviceArray.from_numpy(x[None], "cpu"))
    assert isinstance(d, inferlab.DeviceArray) and d.dtype_name == "int32" and d.numpy().tolist() == [t]
