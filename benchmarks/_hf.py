"""Hugging Face transformers models built from a GGUF file's dequantized tensors.

    from _hf import build_hf_model
    model = build_hf_model("qwen.gguf", dtype=torch.bfloat16, device="cuda")   # eager attention

Used by benchmarks/e2e.py to time transformers on exactly the weights inferlab runs. Supported
architectures: llama (q/k rows un-permuted: llama.cpp's converter permutes them for its
adjacent-pair rope, transformers rotates halves), qwen2, phi3 (fused qkv and gate/up, as in the file)
and gpt2 (Conv1D weights are stored [in, out], so they are transposed).

The model is created on the target device in the target dtype and each tensor is dequantized
(``inferlab.GGUFFile.dequantize``, float32), converted and copied in one at a time, so host memory
never holds more than one float32 tensor: a 7.6 GB Phi-3 F16 file builds in seconds on a GPU machine.
Needs torch and transformers; nothing else in inferlab does.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["build_hf_model", "hf_config", "hf_tensor_map", "HF_ARCHS"]

HF_ARCHS = ("llama", "qwen2", "phi3", "gpt2")


def _meta(f, arch, key, default=None):
    v = f.get(f"{arch}.{key}")
    return default if v is None else v


def hf_config(path, dtype=None):
    """The transformers config (eager attention) matching a GGUF file's metadata and tensor shapes."""
    import transformers
    from inferlab import GGUFFile

    with GGUFFile(path) as f:
        arch = f.architecture
        if arch not in HF_ARCHS:
            raise ValueError(f"{path}: architecture {arch!r} has no transformers builder; supported: "
                             f"{', '.join(HF_ARCHS)}")
        names = {t.name: t for t in f.tensors}
        D = int(_meta(f, arch, "embedding_length"))
        L = int(_meta(f, arch, "block_count"))
        H = int(_meta(f, arch, "attention.head_count"))
        Hkv = int(_meta(f, arch, "attention.head_count_kv", H))
        F = int(_meta(f, arch, "feed_forward_length"))
        n_ctx = int(_meta(f, arch, "context_length", 2048))
        V = int(names["token_embd.weight"].shape[1])
        tied = "output.weight" not in names
        theta = float(_meta(f, arch, "rope.freq_base", 10000.0))
        hd = int(_meta(f, arch, "attention.key_length", D // H))
        if f.get(f"{arch}.rope.scaling.type") not in (None, "", "none"):
            raise NotImplementedError(f"{path}: rope scaling is not mapped to transformers here")
        common = dict(vocab_size=V, tie_word_embeddings=tied)
        # Special token ids only when they lie inside the vocabulary (the architectures' defaults may not).
        for key, attr in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("padding", "pad_token_id")):
            tid = f.get(f"tokenizer.ggml.{key}_token_id")
            common[attr] = int(tid) if tid is not None and 0 <= int(tid) < V else None
        if dtype is not None:
            common["dtype"] = dtype
        if arch == "gpt2":
            eps = float(_meta(f, arch, "attention.layer_norm_epsilon", 1e-5))
            cfg = transformers.GPT2Config(n_embd=D, n_layer=L, n_head=H, n_inner=F, n_positions=n_ctx,
                                          layer_norm_epsilon=eps, activation_function="gelu_new",
                                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
        else:
            eps = float(_meta(f, arch, "attention.layer_norm_rms_epsilon", 1e-5))
            kw = dict(hidden_size=D, num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=Hkv,
                      intermediate_size=F, max_position_embeddings=n_ctx, rms_norm_eps=eps, rope_theta=theta,
                      **common)
            if arch == "llama":
                cfg = transformers.LlamaConfig(head_dim=hd, attention_bias="blk.0.attn_q.bias" in names,
                                               mlp_bias=False, **kw)
            elif arch == "qwen2":
                cfg = transformers.Qwen2Config(use_sliding_window=False, **kw)
            else:
                window = int(_meta(f, arch, "attention.sliding_window", 0)) or None
                cfg = transformers.Phi3Config(sliding_window=window, original_max_position_embeddings=n_ctx,
                                              resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0, **kw)
    cfg._attn_implementation = "eager"
    return cfg


def _unpermute(w, n_head):
    # llama.cpp's converter stores q/k rows per head as (2, hd/2) -> (hd/2, 2) interleaved; undo it.
    # w: [n_head * hd, ...]
    hd = w.shape[0] // n_head
    return w.reshape(n_head, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_tensor_map(arch, n_layers, names):
    """[(hf parameter name, [gguf tensor names], transform name)] for one architecture.

    transform: "" (as is), "T" (transpose; GPT-2 Conv1D), "cat" (concatenate rows), "unpermute_q" /
    "unpermute_k" (llama q/k rows).
    """
    out = []
    if arch == "gpt2":
        out += [("transformer.wte.weight", ["token_embd.weight"], ""),
                ("transformer.wpe.weight", ["position_embd.weight"], ""),
                ("transformer.ln_f.weight", ["output_norm.weight"], ""),
                ("transformer.ln_f.bias", ["output_norm.bias"], "")]
        for i in range(n_layers):
            b, h = f"blk.{i}.", f"transformer.h.{i}."
            out += [(h + "ln_1.weight", [b + "attn_norm.weight"], ""), (h + "ln_1.bias", [b + "attn_norm.bias"], ""),
                    (h + "attn.c_attn.weight", [b + "attn_qkv.weight"], "T"),
                    (h + "attn.c_attn.bias", [b + "attn_qkv.bias"], ""),
                    (h + "attn.c_proj.weight", [b + "attn_output.weight"], "T"),
                    (h + "attn.c_proj.bias", [b + "attn_output.bias"], ""),
                    (h + "ln_2.weight", [b + "ffn_norm.weight"], ""), (h + "ln_2.bias", [b + "ffn_norm.bias"], ""),
                    (h + "mlp.c_fc.weight", [b + "ffn_up.weight"], "T"), (h + "mlp.c_fc.bias", [b + "ffn_up.bias"], ""),
                    (h + "mlp.c_proj.weight", [b + "ffn_down.weight"], "T"),
                    (h + "mlp.c_proj.bias", [b + "ffn_down.bias"], "")]
        if "output.weight" in names:
            out.append(("lm_head.weight", ["output.weight"], ""))
        return out
    out += [("model.embed_tokens.weight", ["token_embd.weight"], ""), ("model.norm.weight", ["output_norm.weight"], "")]
    if "output.weight" in names:
        out.append(("lm_head.weight", ["output.weight"], ""))
    for i in range(n_layers):
        b, h = f"blk.{i}.", f"model.layers.{i}."
        out += [(h + "input_layernorm.weight", [b + "attn_norm.weight"], ""),
                (h + "post_attention_layernorm.weight", [b + "ffn_norm.weight"], ""),
                (h + "self_attn.o_proj.weight", [b + "attn_output.weight"], ""),
                (h + "mlp.down_proj.weight", [b + "ffn_down.weight"], "")]
        if arch == "phi3":
            if b + "attn_qkv.weight" in names:
                out.append((h + "self_attn.qkv_proj.weight", [b + "attn_qkv.weight"], ""))
            else:
                out.append((h + "self_attn.qkv_proj.weight", [b + f"attn_{x}.weight" for x in "qkv"], "cat"))
            if b + "ffn_gate.weight" in names:
                out.append((h + "mlp.gate_up_proj.weight", [b + "ffn_gate.weight", b + "ffn_up.weight"], "cat"))
            else:
                out.append((h + "mlp.gate_up_proj.weight", [b + "ffn_up.weight"], ""))
            continue
        for x in "qkv":
            t = f"unpermute_{x}" if arch == "llama" and x in "qk" else ""
            out.append((h + f"self_attn.{x}_proj.weight", [b + f"attn_{x}.weight"], t))
            if b + f"attn_{x}.bias" in names:
                out.append((h + f"self_attn.{x}_proj.bias", [b + f"attn_{x}.bias"], t))
        out += [(h + "mlp.gate_proj.weight", [b + "ffn_gate.weight"], ""),
                (h + "mlp.up_proj.weight", [b + "ffn_up.weight"], "")]
    return out


def build_hf_model(path, dtype=None, device="cpu"):
    """A transformers causal LM (eager attention, eval mode) holding a GGUF file's weights, dequantized.

    path: a .gguf file of a supported architecture (HF_ARCHS). dtype: a torch dtype (default float32).
    device: where the model is created ("cpu", "cuda", ...).
    """
    import torch
    import transformers
    from inferlab import GGUFFile

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    dtype = dtype or torch.float32
    cfg = hf_config(path)
    if hasattr(cfg, "dtype"):
        cfg.dtype = dtype
    with torch.device(device):
        prev = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
        finally:
            torch.set_default_dtype(prev)
    model = model.to(device=device, dtype=dtype).eval()
    params = dict(model.named_parameters())
    arch = _arch_of(cfg)
    with GGUFFile(path) as f:
        names = {t.name for t in f.tensors}
        H, Hkv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
        done = set()
        for hf_name, srcs, how in hf_tensor_map(arch, cfg.num_hidden_layers, names):
            missing = [s for s in srcs if s not in names]
            if missing:
                raise ValueError(f"{path}: tensor {missing[0]!r} is missing (needed for {hf_name})")
            if hf_name not in params:
                raise RuntimeError(f"transformers {type(model).__name__} has no parameter {hf_name!r}")
            arrs = [np.asarray(f.dequantize(s), dtype=np.float32) for s in srcs]
            w = np.concatenate(arrs, axis=0) if how == "cat" else arrs[0]
            if how == "T":
                w = w.T
            elif how == "unpermute_q":
                w = _unpermute(w, H)
            elif how == "unpermute_k":
                w = _unpermute(w, Hkv)
            p = params[hf_name]
            if tuple(p.shape) != tuple(w.shape):
                raise ValueError(f"{path}: {srcs} gives shape {w.shape}, {hf_name} wants {tuple(p.shape)}")
            with torch.no_grad():
                p.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            done.add(hf_name)
    # Parameters tied to ones already written (lm_head with tied embeddings) are the same tensor.
    left = [n for n, p in params.items() if n not in done
            and not any(p is params[d] for d in done)]
    if left:
        raise RuntimeError(f"{path}: no GGUF tensor for transformers parameters {left[:5]}")
    return model


def _arch_of(cfg):
    return {"gpt2": "gpt2", "llama": "llama", "qwen2": "qwen2", "phi3": "phi3"}[cfg.model_type]
