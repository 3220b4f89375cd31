"""Generated text for tokenizer tests and benchmarks: many scripts, code, emoji/ZWJ, whitespace runs
(CRLF included), contractions in both cases, long numbers, special-token text, random code points."""
from __future__ import annotations

import random
import unicodedata

MULTILINGUAL = [
    "The quick brown fox jumps over the lazy dog.",
    "Größenwahn ist keine Straße; Fußgänger überqueren die Brücke.",
    "L'élève a mangé des crêpes à Noël, n'est-ce pas ? Où ça ?",
    "Cửa Việt, Tiếng Việt có dấu: ệ ở ừ ỹ đường phố Hà Nội.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Όλα καλά;",
    "نص عربي مع أرقام ١٢٣٤٥ وتشكيل: مَرْحَبًا بِكُمْ",
    "עברית: שָׁלוֹם עוֹלָם, מה שלומך?",
    "हिन्दी पाठ: नमस्ते दुनिया, क्या हाल है? क्षत्रिय",
    "বাংলা লেখা: আমার সোনার বাংলা",
    "ภาษาไทย: สวัสดีครับ ยินดีต้อนรับ",
    "កាន់តែពិសេសអាចខលចេញ ភាសាខ្មែរ",
    "中文文本：我想在苹果公司工作，你好世界！",
    "日本語のテキスト：こんにちは、世界。カタカナとひらがな。",
    "한국어 텍스트: 안녕하세요, 세계! 한글 자모",
    "ქართული ენა: გამარჯობა",
    "Հայերեն: Բարեւ աշխարհ",
    "አማርኛ: ሰላም ለዓለም",
    "தமிழ்: வணக்கம் உலகம்",
    "Türkçe: İstanbul'da ılık bir gün; ĞÜŞİÖÇ ğüşiöç",
    "Polski: Zażółć gęślą jaźń.",
    "Ελληνικά και English mixed with 中文 and русский.",
    "Ŀaŀ ǅ ǈ ǋ ǲ ᾈ ᾉ titlecase letters, ſ long s, K kelvin, Å angstrom",
    "math: ∀x∈ℝ, x²≥0; ∑ᵢ aᵢ = ½; π≈3.14159; ∞ ≠ ∅; ⅓ ⅔ Ⅻ ⅻ",
]
CODE = [
    "def f(x):\n    return x ** 2  # square\n\n\nprint(f(3))\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\r\n",
    '{"key": "value", "list": [1, 2, 3], "nested": {"a": null, "b": true}}',
    "<html>\n  <body class=\"x\">\n    <p>Hello &amp; welcome</p>\n  </body>\n</html>",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "    if x:\n        y = [i for i in range(10) if i % 2 == 0]\n\t\treturn {'a': 1}",
    "#include <stdio.h>\nint main(){printf(\"%d\\n\", 42);return 0;}",
    "fn main() -> Result<(), Box<dyn Error>> { let v: Vec<u8> = vec![]; Ok(()) }",
    "x=1;y=2;z=x+y;;;;;;;// comment!!!???...,,,:::",
    "$ ls -la | grep '^d' && echo \"done\" > /dev/null 2>&1",
]
EMOJI = [
    "🦙.cpp 🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3️⃣ (only emoji that has its own token)",
    "👨‍👩‍👧‍👦 family, 👩🏽‍💻 coder, 🏳️‍🌈 flag, 🇺🇸🇯🇵🇩🇪 flags, ❤️‍🔥, 🧑🏿‍🤝‍🧑🏻",
    "😀😃😄😁😆😅🤣😂🙂🙃 👍🏻👍🏼👍🏽👍🏾👍🏿",
    "#️⃣ *️⃣ 0️⃣ ©️ ®️ ™️ ↔️ ▶️ ⏩ ☕ ♻️",
]
WHITESPACE = [
    " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", "\r", " \n", "\n ",
    " \t ", "\t\n", " \r\n ", "\u00a0", "\u3000", "\u2028", "\u2029", "\u200b", "\u2009\u200a", "\x0b\x0c",
    "\u0085", "\u1680", "\u202f", "\u205f", "\x1c\x1d\x1e\x1f",
]
CONTRACTIONS = [
    "it's", "IT'S", "it'S", "we'll", "WE'LL", "We'Ll", "they're", "THEY'RE", "I've", "I'VE", "I'd", "I'D",
    "I'm", "I'M", "don't", "DON'T", "'s", "'S", "'ll", "'LL", "'re", "'ve", "'d", "'m", "'t", "'T",
    "'ſ", "y'all", "' era", "''s", "'''", "rock'n'roll", "O'Neil", "l'homme",
]
SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im_end|>\n", " <|im_end|> ", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_pad|>", "<s>", "</s>", "<unk>", "<|im_start|>user\nhi<|im_end|>",
    "<|end|>", "<|user|>", "<|eot_id|>", "<|begin_of_text|>", "<|endoftext|><|endoftext|>", "<|im_", "|>",
]


def _number(rng: random.Random) -> str:
    k = rng.randint(1, 40)
    s = "".join(rng.choice("0123456789") for _ in range(k))
    r = rng.random()
    if r < 0.2:
        s = f"{s[:3]},{s[3:6]}.{s[6:]}"
    elif r < 0.3:
        s = "".join(chr(0x660 + int(c)) for c in s)  # Arabic-Indic digits
    elif r < 0.4:
        s = "".join(chr(0xFF10 + int(c)) for c in s)  # fullwidth digits
    elif r < 0.45:
        s = s + rng.choice(["²", "³", "¹", "½", "Ⅻ", "⅓"])
    return s


# code point ranges used for random text: (lo, hi) inclusive
_RANGES = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
           (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x1E00, 0x1FFF), (0x2000, 0x206F),
           (0x2190, 0x23FF), (0x3000, 0x30FF), (0x4E00, 0x4E80), (0xAC00, 0xAD00), (0xE000, 0xE010),
           (0xFE00, 0xFE0F), (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF), (0x10000, 0x1007F),
           (0x11000, 0x1107F), (0x2A700, 0x2A710), (0x31350, 0x31360), (0xE0000, 0xE007F), (0x0, 0x1F)]


def random_codepoints(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        if rng.random() < 0.1:
            c = rng.randint(0, 0x10FFFF)
        else:
            lo, hi = rng.choice(_RANGES)
            c = rng.randint(lo, hi)
        if 0xD800 <= c <= 0xDFFF:
            c = 0xFFFD
        out.append(chr(c))
    return "".join(out)


def _piece(rng: random.Random, specials: bool) -> str:
    r = rng.random()
    if r < 0.25:
        s = rng.choice(MULTILINGUAL)
        if rng.random() < 0.3:
            s = unicodedata.normalize(rng.choice(["NFD", "NFKD", "NFC"]), s)
        if rng.random() < 0.3:
            a = rng.randrange(len(s))
            s = s[a:a + rng.randint(1, 30)]
        return s
    if r < 0.38:
        return rng.choice(CODE)
    if r < 0.48:
        return rng.choice(EMOJI)
    if r < 0.6:
        return "".join(rng.choice(WHITESPACE) for _ in range(rng.randint(1, 6)))
    if r < 0.7:
        return rng.choice(CONTRACTIONS)
    if r < 0.78:
        return _number(rng)
    if r < 0.86 and specials:
        return rng.choice(SPECIALS)
    if r < 0.95:
        return random_codepoints(rng, rng.randint(1, 12))
    return rng.choice(["Hello", "hello", "HELLO", "world", " world", "A", "a", "!", "...", "?!", "--", "__init__"])


def corpus(seed: int, n: int = 2000, specials: bool = True) -> list:
    """n strings: each joins 1-8 pieces with random separators (nothing, space, newline, CRLF, tab)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [_piece(rng, specials) for _ in range(rng.randint(1, 8))]
        seps = ["", "", " ", "  ", "\n", "\r\n", "\t", " \n "]
        s = parts[0]
        for p in parts[1:]:
            s += rng.choice(seps) + p
        out.append(s)
    return out


def big_text(seed: int, n_bytes: int) -> str:
    """A large mixed text (for benchmarks): corpus strings joined by newlines until n_bytes of UTF-8."""
    parts, size, k = [], 0, 0
    while size < n_bytes:
        for s in corpus(seed + k, 500):
            parts.append(s)
            size += len(s.encode("utf-8")) + 1
        k += 1
    return "\n".join(parts)
