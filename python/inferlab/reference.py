"""NumPy references for every inferlab kernel and for a whole forward pass.

Each function reads like its formula, takes the same arguments as the kernel in
:mod:`inferlab.kernels` (minus ``device``), and computes in float64 unless
stated otherwise. Shapes are given in the comments.
"""
from __future__ import annotations

import numpy as np


def _f64(x):
    return np.asarray(x, dtype=np.float64)


# =====================================================================
# Kernel library I: embedding, norms, rope, activations, softmax, sampling
# (owned by kernel library I; keep edits inside this section)
# =====================================================================


# ---- end of kernel library I section ----



# =====================================================================
# Kernel library II: matmul on GGUF weights
# (owned by the matmul work; keep edits inside this section)
# =====================================================================


# ---- end of matmul section ----



# =====================================================================
# Kernel library II: attention and KV cache
# (owned by the attention work; keep edits inside this section)
# =====================================================================


# ---- end of attention section ----



# =====================================================================
# Whole-model forward pass (owned by the model work)
# =====================================================================


# ---- end of model section ----
