"""Smallest CUDA smoke path (torch loaded first, as in the tests): DeviceArray, KVCache, a tiny Model."""
import os
import sys
import tempfile

import torch  # noqa: F401  (load order as in the test suite)

import inferlab
from inferlab.testing import write_random_gguf

print("cuda", inferlab.cuda_available(), flush=True)
c = inferlab.KVCache(2, 2, 64, 16, device="cuda")
print("kv cuda ok", c.memory_bytes(), flush=True)
c2 = inferlab.KVCache(1, 2, 64, 10, dtype="bf16")
print("kv cpu ok", flush=True)
try:
    inferlab.KVCache(4000, 64, 128, 1 << 20, device="cuda", n_seqs=8)
except MemoryError as e:
    print("oom ok:", e, flush=True)
d = tempfile.mkdtemp()
p = write_random_gguf(os.path.join(d, "t.gguf"), "llama", preset="tiny", qtype="Q8_0")
m = inferlab.Model(p, device="cuda", n_ctx=256)
print("model ok", m.generate([1, 2, 3], max_tokens=8), flush=True)
sys.exit(0)
