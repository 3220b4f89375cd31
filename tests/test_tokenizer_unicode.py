"""Unicode conformance of the tokenizer tables and pre-tokenizers against HF tokenizers (Oniguruma
regexes, its NFC), code point by code point, and robustness on hostile inputs (time vs HF)."""
from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

from inferlab import Tokenizer
from inferlab._core_loader import core

from conftest import ROOT, TOKENIZER_DIR
from tokenizer_corpus import corpus, random_codepoints

hf = pytest.importorskip("tokenizers", reason="HF tokenizers (a test dependency) is not installed")
from tokenizers import Regex, normalizers, pre_tokenizers  # noqa: E402

tk = core.tokenizer
ALL_CPS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
ALL_TEXT = "".join(map(chr, ALL_CPS))
CATS = ["Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi",
        "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"]


@pytest.fixture(scope="module")
def flags():
    f = tk.categories(ALL_TEXT)
    assert len(f) == len(ALL_CPS)
    return f


def hf_matches(pattern: str) -> set:
    """Code points that Oniguruma (inside HF tokenizers) matches with `pattern`."""
    res = pre_tokenizers.Split(Regex(pattern), behavior="removed").pre_tokenize_str(ALL_TEXT)
    unmatched = set()
    for _, (a, b) in res:
        unmatched.update(ALL_CPS[a:b])
    return set(ALL_CPS) - unmatched


@pytest.mark.parametrize("cls", ["L", "N", "P", "M", "S", "Z", "C", "Lu", "Ll", "Lt", "Lm", "Lo", "Nd"])
def test_categories_match_oniguruma(flags, cls):
    ours = {c for c, f in zip(ALL_CPS, flags) if CATS[f & 31].startswith(cls)}
    theirs = hf_matches(r"\p{%s}" % cls)
    assert ours == theirs, (sorted(ours - theirs)[:10], sorted(theirs - ours)[:10])


def test_white_space_matches_oniguruma(flags):
    ours = {c for c, f in zip(ALL_CPS, flags) if f & 32}
    assert ours == hf_matches(r"\s")


def test_nfc_matches_hf():
    nfc = normalizers.NFC()
    # every code point alone, and random strings heavy in combining marks and precomposed letters
    chunk = 5000
    for i in range(0, len(ALL_CPS), chunk):
        s = "".join(chr(c) + "\u0301" if c % 7 == 0 else chr(c) for c in ALL_CPS[i:i + chunk])
        assert tk.nfc(s) == nfc.normalize_str(s), i
    rng = random.Random(random.randrange(1 << 30))
    marks = [c for c in range(0x300, 0x370)] + [0x1AB0, 0x1DC0, 0x20D0, 0x302A, 0x0591, 0x05B0, 0x093C, 0x0E38,
                                               0x1D165, 0x1D16D, 0x0F71, 0x0F72, 0x0F74, 0x0F80, 0x1161, 0x11A8]
    bases = "aeiouAEIOUcnsyzCNSYZ\u1100\uac00\u0915\u0627\u05d0\u0f40 \u00e9\u1e69\u01d5"
    for _ in range(20000):
        s = "".join(rng.choice([rng.choice(bases), chr(rng.choice(marks))]) for _ in range(rng.randint(1, 8)))
        assert tk.nfc(s) == nfc.normalize_str(s), [hex(ord(c)) for c in s]


PATTERNS = {
    1: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    2: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
       "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    3: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
       "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
}


def hf_pretok(kind):
    if kind == 4:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.Split(Regex(PATTERNS[1]), behavior="isolated")])
    return pre_tokenizers.Split(Regex(PATTERNS[kind]), behavior="isolated")


@pytest.mark.parametrize("kind", [1, 2, 3, 4], ids=["gpt2", "llama3", "qwen2", "starcoder"])
def test_pretokenizers_match_hf_regex(kind):
    assert tk.pretok_from_regex(PATTERNS.get(kind, PATTERNS[1])) == (kind if kind != 4 else 1)
    ref = hf_pretok(kind)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    texts = corpus(seed, 1500)
    # small alphabets that stress the regex corners: apostrophes, spaces before letters, CR/LF runs
    alphabet = ["'", "s", "S", "ſ", "l", "L", "e", "r", "v", "d", "m", "t", " ", "  ", "\t", "\n", "\r", "\r\n",
                "\u00a0", "\u3000", "1", "23", "٣", "½", "x", "é", "\u0301", "!", "?", "(", "中", "🦙", "_", "\x0b"]
    for _ in range(3000):
        texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14))))
    texts += [random_codepoints(rng, rng.randint(1, 40)) for _ in range(500)]
    for s in texts:
        want = [w for w, _ in ref.pre_tokenize_str(s)]
        assert tk.pretokenize(kind, s) == want, (seed, s)


def test_contraction_case_folding_matches_oniguruma():
    """(?i:...) in Oniguruma folds U+017F (long s) to 's' and nothing else onto these letters."""
    ref = hf_pretok(3)
    for c in ALL_CPS[:0x3000]:
        for tail in ("", "e", "l", "E", "L"):
            s = "'" + chr(c) + tail
            assert tk.pretokenize(3, s) == [w for w, _ in ref.pre_tokenize_str(s)], hex(c)


def test_unicode_tables_are_current():
    """The committed unicode_data.cpp is what scripts/gen_unicode_tables.py writes."""
    pytest.importorskip("unicodedataplus", reason="unicodedataplus==16.0.0.post1 regenerates the tables")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_unicode_tables.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------- robustness: linear time, no crash
HOSTILE = {
    "A*1e6": "A" * 1_000_000,
    "newline*1e5": "\n" * 100_000,
    "caret*1e6": "^" * 1_000_000,
    "space*1e6": " " * 1_000_000,
    "random-cps": random_codepoints(random.Random(5), 100_000),
    "digits": "7" * 200_000,
    "apostrophes": "'s'" * 50_000,
    "crlf-mix": " \r\n\t" * 50_000,
    "combining": "e" + "\u0301" * 100_000,
    "marks-unsorted": "a" + "\u0301\u0316" * 50_000,  # NFC must reorder a long run of marks
    "hangul-jamo": "\u1100\u1161\u11a8" * 50_000,
}


def best_time(fn, reps=2):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


needs_conformance = pytest.mark.skipif(not (TOKENIZER_DIR / "hf").is_dir(),
                                       reason=f"conformance data not found at {TOKENIZER_DIR / 'hf'}")


@pytest.fixture(scope="module", params=["qwen2.5", "gpt2", "llama2"])
def pair(request):
    path = TOKENIZER_DIR / "hf" / request.param / "tokenizer.json"
    if not path.is_file():
        pytest.skip(f"conformance data not found: {path}")
    return Tokenizer.from_json(path), hf.Tokenizer.from_file(str(path))


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_inputs_linear_and_fast(pair, case):
    """No crash, same ids as HF, and never more than 3x HF's time on the same input."""
    ours, ref = pair
    text = HOSTILE[case]
    t_hf, enc = best_time(lambda: ref.encode(text, add_special_tokens=False), 1)
    t_ours, ids = best_time(lambda: ours.encode(text), 2)
    assert ids == enc.ids
    assert t_ours <= 3 * t_hf + 0.05, f"{case}: ours {t_ours:.3f}s vs HF {t_hf:.3f}s"
    assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=False)


@needs_conformance
def test_linear_scaling():
    """8x the input takes about 8x the time (O(n log n) plus noise), never 64x (quadratic)."""
    for name in ("gpt2", "llama2", "qwen2.5", "llama-spm"):
        if name == "llama-spm":
            tok = Tokenizer.from_gguf(TOKENIZER_DIR / "ggml-vocab-llama-spm.gguf")
        else:
            tok = Tokenizer.from_json(TOKENIZER_DIR / "hf" / name / "tokenizer.json")
        for unit in ("A", " ", "\n", "^", "ab", "\u0301\u0316"):
            t1, _ = best_time(lambda: tok.encode(unit * 100_000), 3)
            t2, _ = best_time(lambda: tok.encode(unit * 800_000), 2)
            assert t2 < 8 * t1 * 3 + 0.05, (name, unit, t1, t2)
