"""Against Hugging Face transformers, with the same (dequantized) weights.

* CPU: the NumPy reference (inferlab.reference.forward) equals transformers on tiny random models of
  every architecture. This validates the reference itself, including the GGUF conventions (llama's
  permuted q/k rows, phi3's fused tensors, GPT-2's transposed Conv1D weights).
* GPU (cuda mark): inferlab.Model(path, device="cuda").logits on real-shape random models agrees with
  transformers in fp32: top-1 agreement >= 99% over a 256-token teacher-forced sequence. The max and
  mean |delta logit| are printed and written to $OUT/hf_parity_<case>.json (else build/).

Skipped when torch or transformers is not installed.
"""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from inferlab import reference as R  # noqa: E402
from inferlab.testing import hf_model_from_gguf, write_random_gguf  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
ARCHS = ["llama", "qwen2", "phi3", "gpt2"]


def _hf_run(model, ids, device="cpu"):
    with torch.no_grad():
        out = model(torch.as_tensor(np.asarray(ids)[None], device=device), output_hidden_states=True)
    logits = out.logits[0].double().cpu().numpy()
    hidden = [h[0].double().cpu().numpy() for h in out.hidden_states]
    return logits, hidden


@pytest.mark.parametrize("qtype", ["F32", "Q8_0", "Q4_K_M"])
@pytest.mark.parametrize("arch", ARCHS)
def test_reference_matches_transformers_tiny(tmp_path, arch, qtype, rng):
    seed = int(rng.integers(0, 2**31))
    path = write_random_gguf(tmp_path / f"{arch}.gguf", arch, "tiny", qtype, seed=seed)
    T = 48                                         # < the tiny phi3 window (64): HF eager ignores windows
    ids = rng.integers(0, 320, size=T)
    tr = R.forward(path, ids)
    hf = hf_model_from_gguf(path, dtype="float64")
    logits, hidden = _hf_run(hf, ids)
    L = len(tr["layers"])
    assert len(hidden) == L + 1
    # hidden_states[i] is the residual entering layer i; the last one is after the final norm
    for i in range(L):
        np.testing.assert_allclose(tr["layers"][i]["input"], hidden[i], rtol=1e-5, atol=1e-6, err_msg=f"layer {i}")
    np.testing.assert_allclose(tr["output_norm"], hidden[L], rtol=1e-5, atol=1e-5)
    # HF computes rope angles in float32 even in a float64 model: ~1e-7 relative differences
    np.testing.assert_allclose(tr["logits"], logits, rtol=1e-5, atol=1e-5 * np.abs(logits).max())
    assert (tr["logits"].argmax(-1) == logits.argmax(-1)).mean() >= 0.98


# ---- inferlab on the GPU vs transformers, real shapes --------------------------------------------------

GPU_CASES = [
    ("qwen2", "qwen2.5-0.5b", "Q8_0"),
    ("qwen2", "qwen2.5-0.5b", "Q4_K_M"),
    ("phi3", "phi3-mini-4k", "Q8_0"),
    ("gpt2", "gpt2-124m", "F16"),
    ("llama", "smollm2-135m", "Q8_0"),
]


def _record(entry):
    out_dir = pathlib.Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "build"
    out_dir.mkdir(parents=True, exist_ok=True)
    # one file per case: xdist workers run cases concurrently
    f = out_dir / f"hf_parity_{entry['preset']}-{entry['qtype']}.json"
    f.write_text(json.dumps(entry, indent=2, sort_keys=True))
    return f


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.parametrize("arch,preset,qtype", GPU_CASES, ids=[f"{p}-{q}" for _, p, q in GPU_CASES])
def test_model_matches_transformers_real_shapes(tmp_path, arch, preset, qtype):
    import inferlab

    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    path = write_random_gguf(tmp_path / f"{preset}.gguf", arch, preset, qtype, seed=1234)
    rng = np.random.default_rng(99)
    T = 256
    ids = rng.integers(0, 256 + 40, size=T)        # mostly byte tokens and merges, like real text
    ids[::7] = rng.integers(0, {"qwen2": 151936, "phi3": 32064, "gpt2": 50257, "llama": 49152}[arch], size=len(ids[::7]))

    hf = hf_model_from_gguf(path, dtype="float32", device="cuda")
    with torch.no_grad():
        ref = hf(torch.as_tensor(ids[None], device="cuda")).logits[0].float().cpu().numpy()
    del hf
    torch.cuda.empty_cache()

    model = inferlab.Model(path, device="cuda", n_ctx=512)
    got = np.asarray(model.logits(ids), dtype=np.float32)
    del model
    assert got.shape == ref.shape
    assert np.isfinite(got).all()
    d = np.abs(got.astype(np.float64) - ref)
    top1 = float((got.argmax(-1) == ref.argmax(-1)).mean())
    entry = dict(preset=preset, qtype=qtype, tokens=T, top1_agreement=top1, max_abs_dlogit=float(d.max()),
                 mean_abs_dlogit=float(d.mean()), logit_std=float(ref.std()),
                 transformers=transformers.__version__, torch=torch.__version__,
                 device=torch.cuda.get_device_name(0))
    f = _record(entry)
    print(f"{preset} {qtype}: top-1 {top1:.4f}, max |dlogit| {d.max():.3e}, mean |dlogit| {d.mean():.3e} "
          f"(logit std {ref.std():.3f}) -> {f}")
    assert top1 >= 0.99, entry
