#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#ifdef INFERLAB_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace inferlab {

namespace {

constexpr size_t kWsAlign = 256;
constexpr size_t kCudaReserve = size_t(128) << 20;  // cuBLAS handles/workspace, graphs, allocator slack
// The lm head runs on at most this many rows per matmul call: matmul's fused decode kernel (T <= 8) reads the
// quantized weight directly, so the largest weight never needs a dequantized fp16 scratch copy.
constexpr int kLmHeadRows = 8;

// Scratch the CUDA matmul grows on first use for T > 8 rows (prefill; kernels/cuda/matmul.cu): an fp16 copy of
// a tile of the largest quantized weight (at most 64 MiB) and x converted (up to 4 bytes per element).
size_t matmul_scratch_estimate(const ModelWeights& w, int64_t rows) {
  size_t most = 0;
  int64_t maxk = 0;
  auto see = [&](const QWeight& q) {
    if (!q.data.defined()) return;
    if (q.type != GGMLType::F32 && q.type != GGMLType::F16 && q.type != GGMLType::BF16)
      most = std::max(most, std::min((size_t)(q.n * q.k) * 2, size_t(64) << 20));
    maxk = std::max(maxk, q.k);
  };
  for (const LayerWeights& l : w.layers) {
    for (const QWeight* q : {&l.wqkv, &l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate_up, &l.w_gate, &l.w_up, &l.w_down})
      see(*q);
  }
  return most + (size_t)(rows * maxk) * 4;
}
constexpr size_t MiB = size_t(1) << 20;

size_t align_up(size_t x) { return (x + kWsAlign - 1) / kWsAlign * kWsAlign; }

// Free host memory (MemAvailable) in bytes, 0 when unknown.
size_t host_available_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  size_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

std::string mib(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (double)MiB);
  return buf;
}

// Carves named buffers out of one allocation (dry run first to size it).
struct Carver {
  struct Item {
    Tensor* dst;
    std::vector<int64_t> shape;
    DType dtype;
    size_t off;
  };
  std::vector<Item> items;
  size_t total = 0;
  void add(Tensor* dst, std::vector<int64_t> shape, DType dtype) {
    size_t n = dtype_size(dtype);
    for (int64_t d : shape) n *= (size_t)d;
    items.push_back({dst, std::move(shape), dtype, total});
    total = align_up(total + std::max<size_t>(n, 1));
  }
  Tensor allocate(Device dev) {
    Tensor arena = Tensor::empty({(int64_t)std::max<size_t>(total, 1)}, DType::U8, dev);
    std::shared_ptr<Storage> keep = arena.storage();
    auto* base = static_cast<uint8_t*>(arena.data());
    for (Item& it : items) *it.dst = Tensor::from_blob(base + it.off, it.shape, it.dtype, dev, [keep](void*) {});
    return arena;
  }
};

std::shared_ptr<void> pinned_alloc(size_t nbytes, Device dev) {
#ifdef INFERLAB_WITH_CUDA
  if (dev == Device::CUDA) {
    void* p = nullptr;
    IL_CUDA_CHECK(cudaHostAlloc(&p, std::max<size_t>(nbytes, 64), cudaHostAllocDefault));
    return std::shared_ptr<void>(p, [](void* q) { cudaFreeHost(q); });
  }
#endif
  void* p = host_malloc(nbytes);
  return std::shared_ptr<void>(p, [](void* q) { host_free(q); });
}

}  // namespace

// Collects traced activations, rows [row0, row0 + T) of a T_total-token pass at a time.
struct Model::Tracer {
  int64_t total = 0;  // T_total
  int64_t row0 = 0;   // first row of the current chunk
  std::vector<TraceEntry> entries;
  std::map<std::pair<std::string, int>, size_t> index;

  void put(const std::string& name, int layer, const Tensor& t) {
    auto key = std::make_pair(name, layer);
    auto it = index.find(key);
    if (it == index.end()) {
      TraceEntry e;
      e.name = name;
      e.layer = layer;
      e.shape = t.shape();
      e.shape[0] = total;
      int64_t n = 1;
      for (int64_t d : e.shape) n *= d;
      e.data.assign((size_t)n, std::nanf(""));
      it = index.emplace(key, entries.size()).first;
      entries.push_back(std::move(e));
    }
    TraceEntry& e = entries[it->second];
    IL_CHECK_ARG(t.dtype() == DType::F32, "trace of ", name, " expects float32");
    const int64_t row = t.shape()[0] ? t.numel() / t.shape()[0] : 0;
    memcpy_any(e.data.data() + row0 * row, Device::CPU, t.data(), t.device(), t.nbytes(), true);
  }
};

// ============================== construction ==============================

Model::Model(const std::string& path, const ModelOptions& opt) : path_(path), opt_(opt) {
  IL_CHECK_ARG(opt.n_ctx >= 1 && opt.n_ctx <= (1 << 24), "n_ctx must be in [1, 16777216], got ", opt.n_ctx);
  IL_CHECK_ARG(opt.n_seqs >= 1 && opt.n_seqs <= (1 << 16), "n_seqs must be in [1, 65536], got ", opt.n_seqs);
  IL_CHECK_ARG(opt.n_batch >= 1 && opt.n_batch <= (1 << 16), "n_batch must be in [1, 65536], got ", opt.n_batch);
  IL_CHECK_ARG(opt.kv_dtype == DType::F16 || opt.kv_dtype == DType::BF16 || opt.kv_dtype == DType::F32,
               "kv_dtype must be float16, bfloat16 or float32, got ", dtype_name(opt.kv_dtype));
  const Device dev = opt.device;
  IL_CHECK_ARG(!(dev == Device::CUDA && opt.kv_dtype == DType::F32),
               "kv_dtype float32 is supported on the CPU only; use float16 or bfloat16 on the GPU");
  if (dev == Device::CUDA) require_cuda("loading a model on the GPU");

  file_ = GGUFFile::open(path);
  cfg_ = ModelConfig::from_gguf(*file_);
  if (cfg_.n_ctx_train > 0) opt_.n_ctx = std::min(opt_.n_ctx, cfg_.n_ctx_train);
  const int64_t n_ctx = opt_.n_ctx, n_seqs = opt_.n_seqs;
  M_ = (int)std::max<int64_t>(std::min<int64_t>(opt_.n_batch, n_ctx * n_seqs), n_seqs);
  opt_.n_batch = M_;
  R_ = (int)std::max<int64_t>(n_seqs, std::min(M_, 64));

  // ---- budget, before anything is allocated ----
  const bool fuse = opt_.fuse_weights < 0 ? dev == Device::CUDA : opt_.fuse_weights > 0;
  size_t scratch = 0;
  {
    WeightArena dry(dev, file_, nullptr, nullptr);
    ModelWeights sized = build_weights(*file_, cfg_, dry, fuse, fuse);  // also validates every tensor
    mem_.weights = sized.device_bytes;
    mem_.mapped_weights = sized.mapped_bytes;
    if (dev == Device::CUDA) scratch = matmul_scratch_estimate(sized, M_);
  }
  KVCacheConfig kvc;
  kvc.n_layers = cfg_.n_layers;
  kvc.n_kv_heads = cfg_.n_kv_heads;
  kvc.head_dim = cfg_.head_dim;
  kvc.max_tokens = (int)n_ctx;
  kvc.n_seqs = (int)n_seqs;
  kvc.dtype = opt_.kv_dtype;
  kvc.device = dev;
  const double kv_estimate = 2.0 * cfg_.n_layers * (double)n_seqs * cfg_.n_kv_heads * (double)n_ctx *
                             cfg_.head_dim * (double)dtype_size(opt_.kv_dtype);

  const int64_t D = cfg_.d_model, F = cfg_.d_ff, V = cfg_.vocab;
  const int64_t Nq = (int64_t)cfg_.n_heads * cfg_.head_dim, Nkv = (int64_t)cfg_.n_kv_heads * cfg_.head_dim;
  Carver ws;
  ws.add(&io_, {4, M_}, DType::I32);
  ws.add(&x_, {M_, D}, DType::F32);
  ws.add(&h_, {M_, D}, DType::F32);
  const int64_t Htot = cfg_.n_heads + 2 * (int64_t)cfg_.n_kv_heads;
  ws.add(&qkv_, {M_, Htot * cfg_.head_dim}, DType::F32);
  ws.add(&qkv_idx_, {M_ * Htot}, DType::I32);
  ws.add(&q_, {M_, Nq}, DType::F32);
  ws.add(&k_, {M_, Nkv}, DType::F32);
  ws.add(&v_, {M_, Nkv}, DType::F32);
  // The CUDA attention kernels take q and write their output in the KV cache's dtype (fp16/bf16):
  // q is converted once per layer into qh_, and the output projection reads att_ in that dtype.
  const DType attn_dtype = dev == Device::CUDA ? opt_.kv_dtype : DType::F32;
  if (attn_dtype != DType::F32) ws.add(&qh_, {M_, Nq}, attn_dtype);
  ws.add(&att_, {M_, Nq}, attn_dtype);
  ws.add(&o_, {M_, D}, DType::F32);
  ws.add(&gu_, {M_, 2 * F}, DType::F32);
  ws.add(&act_, {M_, F}, DType::F32);
  ws.add(&logits_, {R_, V}, DType::F32);
  ws.add(&tokens_, {n_seqs}, DType::I32);
  ws.add(&prev_, {n_seqs, n_ctx}, DType::I32);

  mem_.device = device_name(dev);
  mem_.workspace = ws.total;
  mem_.reserve = dev == Device::CUDA ? kCudaReserve + scratch : 0;
  const double need = (double)mem_.weights + kv_estimate + (double)ws.total + (double)mem_.reserve;
  size_t free_bytes = 0, total_bytes = 0;
  if (dev == Device::CUDA)
    mem_get_info(&free_bytes, &total_bytes);
  else
    free_bytes = host_available_bytes();
  mem_.free_at_load = free_bytes;
  if (free_bytes > 0 && need > (double)free_bytes)
    throw DeviceMemoryError(str_cat(
        "the model does not fit in ", dev == Device::CUDA ? "GPU" : "host", " memory: it needs ", mib(need),
        " (weights ", mib((double)mem_.weights), " + KV cache ", mib(kv_estimate), " for n_ctx=", n_ctx,
        " x n_seqs=", n_seqs, " + workspace ", mib((double)ws.total),
        mem_.reserve ? str_cat(" + reserve ", mib((double)mem_.reserve)) : std::string(), ") but only ",
        mib((double)free_bytes), " is free; reduce n_ctx or n_seqs"));
  if (kv_estimate > 9.0e18) throw DeviceMemoryError("the KV cache size overflows; reduce n_ctx or n_seqs");
  mem_.kv_cache = KVCache::bytes_needed(kvc);
  mem_.total = mem_.weights + mem_.kv_cache + mem_.workspace;

  // ---- allocate and upload ----
  {
    std::shared_ptr<void> keeper;
    uint8_t* base = nullptr;
    Tensor arena;
    if (mem_.weights > 0) {
      arena = Tensor::empty({(int64_t)mem_.weights}, DType::U8, dev);
      keeper = arena.storage();
      base = static_cast<uint8_t*>(arena.data());
    }
    WeightArena live(dev, file_, base, keeper);
    w_ = build_weights(*file_, cfg_, live, fuse, fuse);
    live.upload(opt_.progress && dev == Device::CUDA);
  }
  kv_ = std::make_unique<KVCache>(kvc);
  if (dev == Device::CUDA) kv_->reserve_decode_workspace(cfg_.n_heads);
  ws_ = ws.allocate(dev);

  // Host mirrors: pinned on CUDA so the per-step uploads are asynchronous.
  if (dev == Device::CUDA) {
    io_pinned_ = pinned_alloc(io_.nbytes(), dev);
    tok_pinned_ = pinned_alloc(tokens_.nbytes(), dev);
    io_host_ = static_cast<int32_t*>(io_pinned_.get());
    tok_host_ = static_cast<int32_t*>(tok_pinned_.get());
#ifdef INFERLAB_WITH_CUDA
    cudaEvent_t ev;
    IL_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    io_event_holder_ = std::shared_ptr<void>(ev, [](void* e) { cudaEventDestroy(static_cast<cudaEvent_t>(e)); });
    io_event_ = ev;
#endif
  } else {
    io_host_ = io_.data_as<int32_t>();
    tok_host_ = tokens_.data_as<int32_t>();
  }
  std::memset(io_host_, 0, io_.nbytes());
  {
    // Gather indices that split fused [T, (Hq + 2 Hkv) * hd] q/k/v rows into q [T*Hq], k, v [T*Hkv] rows of hd:
    // [q: t*Htot + h | k: t*Htot + Hq + h | v: t*Htot + Hq + Hkv + h]; any prefix of T rows is valid.
    const int64_t Hq = cfg_.n_heads, Hkv = cfg_.n_kv_heads;
    std::vector<int32_t> idx((size_t)(M_ * Htot));
    int32_t* iq = idx.data();
    int32_t* ik = iq + M_ * Hq;
    int32_t* iv = ik + M_ * Hkv;
    for (int64_t t = 0; t < M_; ++t) {
      for (int64_t h = 0; h < Hq; ++h) iq[t * Hq + h] = (int32_t)(t * Htot + h);
      for (int64_t h = 0; h < Hkv; ++h) {
        ik[t * Hkv + h] = (int32_t)(t * Htot + Hq + h);
        iv[t * Hkv + h] = (int32_t)(t * Htot + Hq + Hkv + h);
      }
    }
    memcpy_any(qkv_idx_.data(), dev, idx.data(), Device::CPU, idx.size() * sizeof(int32_t), true);
  }
  lens_.assign((size_t)n_seqs, 0);
  hist_.assign((size_t)(n_seqs * n_ctx), -1);
  hist_synced_.assign((size_t)n_seqs, -1);

  if (dev == Device::CUDA) warm_up();

  graphs_ok_ = false;
  if (dev != Device::CUDA) {
    graph_status_ = "eager: CUDA graphs apply to the GPU only";
  } else if (!opt_.cuda_graphs) {
    graph_status_ = "eager: disabled (cuda_graphs=False)";
  } else if (const char* e = std::getenv("INFERLAB_NO_CUDA_GRAPH"); e && *e && std::string(e) != "0") {
    graph_status_ = "eager: disabled by INFERLAB_NO_CUDA_GRAPH";
  } else {
    graphs_ok_ = true;
    graph_status_ = "enabled: the decode step is captured on its second run for each batch size";
  }
}

Model::~Model() {
  try {
    synchronize();
  } catch (...) {
  }
  release_graphs();
}

void Model::release_graphs() {
#ifdef INFERLAB_WITH_CUDA
  for (auto& kv : graphs_)
    if (kv.second.exec) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(kv.second.exec));
#endif
  graphs_.clear();
}

int Model::graphs_captured() const {
  int n = 0;
  for (const auto& kv : graphs_) n += kv.second.exec != nullptr;
  return n;
}

int Model::seq_len(int slot) const {
  IL_CHECK_ARG(slot >= 0 && slot < opt_.n_seqs, "slot must be in [0, ", opt_.n_seqs, "), got ", slot);
  return lens_[(size_t)slot];
}

void Model::reset() {
  std::fill(lens_.begin(), lens_.end(), 0);
  std::fill(hist_.begin(), hist_.end(), -1);
  std::fill(hist_synced_.begin(), hist_synced_.end(), -1);
}

void Model::check_ids(const std::vector<int32_t>& ids, const char* arg) const {
  for (size_t i = 0; i < ids.size(); ++i)
    IL_CHECK_ARG(ids[i] >= 0 && ids[i] < cfg_.vocab, arg, ": token id ", ids[i], " at index ", i,
                 " is out of range for the vocabulary of ", cfg_.vocab, " tokens");
}

// ============================== the forward pass ==============================

void Model::norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& out) {
  if (cfg_.quirks.norm == NormKind::RMS)
    ops::rms_norm(x, w, cfg_.norm_eps, out);
  else
    ops::layer_norm(x, w, b, cfg_.norm_eps, out);
}

void Model::add_norm(Tensor& residual, const Tensor& x, const Tensor& w, const Tensor& b, Tensor& out) {
  if (cfg_.quirks.norm == NormKind::RMS)
    ops::add_rms_norm(residual, x, w, cfg_.norm_eps, out);
  else
    ops::add_layer_norm(residual, x, w, b, cfg_.norm_eps, out);
}

void Model::wait_io() {
#ifdef INFERLAB_WITH_CUDA
  if (io_event_) IL_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(io_event_)));
#endif
}

void Model::upload_io() {
#ifdef INFERLAB_WITH_CUDA
  if (opt_.device == Device::CUDA) {
    cudaStream_t s = current_stream();
    IL_CUDA_CHECK(cudaMemcpyAsync(io_.data(), io_host_, io_.nbytes(), cudaMemcpyHostToDevice, s));
    IL_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(io_event_), s));
  }
#endif
}

void Model::forward(int T, const std::vector<Segment>* segs, Tracer* tr) {
  const ModelConfig& c = cfg_;
  const ArchQuirks& q = c.quirks;
  const int64_t Hq = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim, F = c.d_ff;

  Tensor ids = io_.slice_rows(0, 1).view({M_}).slice_rows(0, T);
  Tensor pos = io_.slice_rows(1, 1).view({M_}).slice_rows(0, T);
  Tensor slots = io_.slice_rows(2, 1).view({M_}).slice_rows(0, T);
  Tensor lens = io_.slice_rows(3, 1).view({M_}).slice_rows(0, T);
  Tensor X = x_.slice_rows(0, T), H = h_.slice_rows(0, T), O = o_.slice_rows(0, T);
  Tensor Q = q_.slice_rows(0, T), K = k_.slice_rows(0, T), Vv = v_.slice_rows(0, T);
  Tensor A = att_.slice_rows(0, T), ACT = act_.slice_rows(0, T);
  Tensor A3 = A.view({T, Hq, hd});

  ops::embedding_q(ids, w_.tok_embd, X);
  if (q.learned_positions) {
    ops::embedding_q(pos, w_.pos_embd, O);
    ops::add(X, O, X);
  }
  if (tr) tr->put("embeddings", -1, X);
  norm(X, w_.layers[0].attn_norm_w, w_.layers[0].attn_norm_b, H);

  const int L = c.n_layers;
  for (int l = 0; l < L; ++l) {
    const LayerWeights& lw = w_.layers[(size_t)l];
    if (tr) {
      tr->put("input", l, X);
      tr->put("attn_norm", l, H);
    }
    // ---- attention ----
    Tensor Q3 = Q.view({T, Hq, hd}), K3 = K.view({T, Hkv, hd}), V3 = Vv.view({T, Hkv, hd});
    if (lw.qkv_fused) {
      Tensor QKV = qkv_.slice_rows(0, T);  // [T, (Hq + 2 Hkv) * hd]
      ops::matmul(H, lw.wqkv, QKV, lw.bqkv, opt_.int8_activations);
      if (T == 1) {
        // One token: q, k and v are contiguous head ranges of the row; rope q and k in one call.
        Tensor heads = QKV.view({Hq + 2 * Hkv, hd});
        Q3 = heads.slice_rows(0, Hq).view({1, Hq, hd});
        K3 = heads.slice_rows(Hq, Hkv).view({1, Hkv, hd});
        V3 = heads.slice_rows(Hq + Hkv, Hkv).view({1, Hkv, hd});
        if (q.rope) {
          Tensor qk = heads.slice_rows(0, Hq + Hkv).view({1, Hq + Hkv, hd});
          ops::rope(qk, pos, c.rope_theta, c.n_rot, q.rope_style, qk);
        }
      } else {
        // Split the rows with three gathers of hd-wide rows (the embedding op on a float table).
        Tensor table = QKV.view({T * (Hq + 2 * Hkv), hd});
        Tensor Qr = Q.view({T * Hq, hd}), Kr = K.view({T * Hkv, hd}), Vr = Vv.view({T * Hkv, hd});
        ops::embedding(qkv_idx_.slice_rows(0, T * Hq), table, Qr);
        ops::embedding(qkv_idx_.slice_rows(M_ * Hq, T * Hkv), table, Kr);
        ops::embedding(qkv_idx_.slice_rows(M_ * (Hq + Hkv), T * Hkv), table, Vr);
        if (q.rope) {
          ops::rope(Q3, pos, c.rope_theta, c.n_rot, q.rope_style, Q3);
          ops::rope(K3, pos, c.rope_theta, c.n_rot, q.rope_style, K3);
        }
      }
    } else {
      ops::matmul(H, lw.wq, Q, lw.bq, opt_.int8_activations);
      ops::matmul(H, lw.wk, K, lw.bk, opt_.int8_activations);
      ops::matmul(H, lw.wv, Vv, lw.bv, opt_.int8_activations);
      if (q.rope) {
        ops::rope(Q3, pos, c.rope_theta, c.n_rot, q.rope_style, Q3);
        ops::rope(K3, pos, c.rope_theta, c.n_rot, q.rope_style, K3);
      }
    }
    if (tr) {
      tr->put("q", l, Q3);
      tr->put("k", l, K3);
      tr->put("v", l, V3);
    }
    ops::kv_cache_store(*kv_, l, K3, V3, slots, pos);
    Tensor Qa = Q3;
    if (qh_.defined()) {
      Qa = qh_.slice_rows(0, T).view({T, Hq, hd});
      ops::convert(Q3, Qa);
    }
    if (!segs) {
      ops::attention_decode(Qa, *kv_, l, lens, A3, c.attn_scale, c.sliding_window);
    } else {
      for (const Segment& s : *segs) {
        Tensor qs = Qa.slice_rows(s.row, s.n), as = A3.slice_rows(s.row, s.n);
        ops::attention_prefill_cached(qs, *kv_, l, s.slot, s.start_pos, as, c.attn_scale, c.sliding_window);
      }
    }
    ops::matmul(A, lw.wo, O, lw.bo, opt_.int8_activations);
    if (tr) tr->put("attn_out", l, O);
    add_norm(X, O, lw.ffn_norm_w, lw.ffn_norm_b, H);

    // ---- MLP ----
    if (q.mlp == MlpKind::SwiGLU) {
      if (lw.gate_up_fused) {
        Tensor GU = gu_.slice_rows(0, T);
        ops::matmul(H, lw.w_gate_up, GU, Tensor(), opt_.int8_activations);
        ops::swiglu_fused(GU, ACT);
      } else {
        Tensor halves = gu_.view({2 * (int64_t)M_, F});
        Tensor G = halves.slice_rows(0, T), U = halves.slice_rows(T, T);
        ops::matmul(H, lw.w_gate, G, Tensor(), opt_.int8_activations);
        ops::matmul(H, lw.w_up, U, Tensor(), opt_.int8_activations);
        ops::swiglu(G, U, ACT);
      }
    } else {
      Tensor U = gu_.view({2 * (int64_t)M_, F}).slice_rows(0, T);
      ops::matmul(H, lw.w_up, U, lw.b_up, opt_.int8_activations);
      ops::gelu(U, ACT);
    }
    ops::matmul(ACT, lw.w_down, O, lw.b_down, opt_.int8_activations);
    if (tr) tr->put("mlp_out", l, O);
    if (l + 1 < L)
      add_norm(X, O, w_.layers[(size_t)l + 1].attn_norm_w, w_.layers[(size_t)l + 1].attn_norm_b, H);
    else
      add_norm(X, O, w_.out_norm_w, w_.out_norm_b, H);
  }
  if (tr) tr->put("output_norm", -1, H);
}

void Model::lm_head(int row, int n, int out_row) {
  for (int r = 0; r < n; r += kLmHeadRows) {
    const int m = std::min(kLmHeadRows, n - r);
    Tensor y = logits_.slice_rows(out_row + r, m);
    ops::matmul(h_.slice_rows(row + r, m), w_.output, y, Tensor(), opt_.int8_activations);
  }
}

// One prefill of the largest chunk and one decode of the largest batch, so that every kernel creates its
// handles and grows its scratch buffers now: nothing is (re)allocated later, which keeps the captured CUDA
// graphs' pointers valid.
void Model::warm_up() {
  std::vector<std::vector<int32_t>> seqs;
  std::vector<int> slots;
  for (int64_t left = M_, s = 0; left > 0 && s < opt_.n_seqs; ++s) {
    const int64_t n = std::min<int64_t>(left, opt_.n_ctx);
    seqs.emplace_back((size_t)n, 0);
    slots.push_back((int)s);
    left -= n;
  }
  prefill_segments(seqs, slots, nullptr, nullptr);
  decode(std::vector<int32_t>((size_t)opt_.n_seqs, 0), std::vector<uint8_t>((size_t)opt_.n_seqs, 0));
  synchronize();
  reset();
}

void Model::decode_body(int B) {
  forward(B, nullptr, nullptr);
  lm_head(0, B, 0);
}

// ============================== prefill / logits / trace ==============================

void Model::prefill_segments(const std::vector<std::vector<int32_t>>& seqs, const std::vector<int>& slots,
                             Tracer* tr, float* all_logits) {
  const size_t n = seqs.size();
  const int64_t V = cfg_.vocab;
  size_t b = 0;
  int done = 0;  // tokens of seqs[b] already processed
  int64_t row0 = 0;
  while (b < n) {
    wait_io();
    int32_t* h_ids = io_host_;
    int32_t* h_pos = io_host_ + M_;
    int32_t* h_slot = io_host_ + 2 * M_;
    int32_t* h_len = io_host_ + 3 * M_;
    std::vector<Segment> segs;
    std::vector<std::pair<int, int>> finished;  // (row, sequence index)
    int T = 0;
    while (b < n && T < M_) {
      const auto& s = seqs[b];
      const int take = std::min<int>(M_ - T, (int)s.size() - done);
      const int slot = slots[b];
      segs.push_back({slot, done, take, T});
      for (int i = 0; i < take; ++i) {
        h_ids[T + i] = s[(size_t)(done + i)];
        h_pos[T + i] = done + i;
        h_slot[T + i] = slot;
        h_len[T + i] = done + i + 1;
      }
      T += take;
      done += take;
      lens_[(size_t)slot] = done;
      if (done == (int)s.size()) {
        finished.push_back({T - 1, (int)b});
        ++b;
        done = 0;
      }
    }
    upload_io();
    if (tr) tr->row0 = row0;
    forward(T, &segs, tr);
    if (all_logits) {
      for (int r = 0; r < T; r += R_) {
        const int m = std::min(R_, T - r);
        lm_head(r, m, 0);
        Tensor lg = logits_.slice_rows(0, m);
        memcpy_any(all_logits + (row0 + r) * V, Device::CPU, lg.data(), lg.device(), lg.nbytes(), true);
      }
    } else {
      for (const auto& f : finished) lm_head(f.first, 1, f.second);
    }
    row0 += T;
  }
}

void Model::logits(const std::vector<int32_t>& ids, float* out) {
  IL_CHECK_ARG(!ids.empty(), "ids must not be empty");
  IL_CHECK_ARG((int64_t)ids.size() <= opt_.n_ctx, "ids has ", ids.size(), " tokens, more than n_ctx=", opt_.n_ctx);
  check_ids(ids, "ids");
  lens_[0] = 0;
  hist_synced_[0] = -1;
  prefill_segments({ids}, {0}, nullptr, out);
  lens_[0] = 0;
}

std::vector<TraceEntry> Model::trace(const std::vector<int32_t>& ids) {
  IL_CHECK_ARG(!ids.empty(), "ids must not be empty");
  IL_CHECK_ARG((int64_t)ids.size() <= opt_.n_ctx, "ids has ", ids.size(), " tokens, more than n_ctx=", opt_.n_ctx);
  check_ids(ids, "ids");
  Tracer tr;
  tr.total = (int64_t)ids.size();
  TraceEntry lg;
  lg.name = "logits";
  lg.shape = {(int64_t)ids.size(), (int64_t)cfg_.vocab};
  lg.data.assign(ids.size() * (size_t)cfg_.vocab, std::nanf(""));
  lens_[0] = 0;
  hist_synced_[0] = -1;
  prefill_segments({ids}, {0}, &tr, lg.data.data());
  lens_[0] = 0;
  tr.entries.push_back(std::move(lg));
  return std::move(tr.entries);
}

void Model::prefill(const std::vector<std::vector<int32_t>>& prompts) {
  const size_t B = prompts.size();
  IL_CHECK_ARG(B >= 1 && B <= (size_t)opt_.n_seqs, "prefill needs 1 to n_seqs=", opt_.n_seqs, " prompts, got ", B);
  std::vector<int> slots(B);
  for (size_t b = 0; b < B; ++b) {
    const auto& p = prompts[b];
    IL_CHECK_ARG(!p.empty(), "prompt ", b, " is empty");
    IL_CHECK_ARG((int64_t)p.size() <= opt_.n_ctx, "prompt ", b, " has ", p.size(),
                 " tokens, more than the context size n_ctx=", opt_.n_ctx);
    check_ids(p, "prompt");
    slots[b] = (int)b;
  }
  for (size_t b = 0; b < B; ++b) {
    int32_t* row = hist_.data() + b * (size_t)opt_.n_ctx;
    std::fill(row, row + opt_.n_ctx, -1);
    std::copy(prompts[b].begin(), prompts[b].end(), row);
    hist_synced_[b] = -1;
    lens_[b] = 0;
  }
  prefill_segments(prompts, slots, nullptr, nullptr);
}

// ============================== decode / sample ==============================

void Model::decode(const std::vector<int32_t>& tokens, const std::vector<uint8_t>& active) {
  const int B = (int)tokens.size();
  IL_CHECK_ARG(B >= 1 && B <= opt_.n_seqs, "decode needs 1 to n_seqs=", opt_.n_seqs, " tokens, got ", B);
  IL_CHECK_ARG(active.size() == tokens.size(), "active has ", active.size(), " entries, tokens has ", B);
  check_ids(tokens, "tokens");
  for (int b = 0; b < B; ++b) {
    if (!active[(size_t)b]) continue;
    IL_CHECK_ARG(lens_[(size_t)b] >= 1, "slot ", b, " has no prompt; call prefill first");
    IL_CHECK_ARG(lens_[(size_t)b] < opt_.n_ctx, "slot ", b, " is full (n_ctx=", opt_.n_ctx, " tokens)");
  }
  wait_io();
  int32_t* h_ids = io_host_;
  int32_t* h_pos = io_host_ + M_;
  int32_t* h_slot = io_host_ + 2 * M_;
  int32_t* h_len = io_host_ + 3 * M_;
  for (int b = 0; b < B; ++b) {
    const int len = lens_[(size_t)b];
    // An inactive row recomputes a harmless dummy at its last position so every row stays in range.
    const int p = active[(size_t)b] ? len : std::max(len - 1, 0);
    h_ids[b] = active[(size_t)b] ? tokens[(size_t)b] : 0;
    h_pos[b] = p;
    h_slot[b] = b;
    h_len[b] = p + 1;
  }
  upload_io();

  bool done = false;
#ifdef INFERLAB_WITH_CUDA
  if (graphs_ok_) {
    Graph& g = graphs_[B];
    cudaStream_t s = current_stream();
    if (!g.exec && g.eager_runs >= 1) {
      // Capture on the second run: the first (eager) run lets every op create its handles and workspaces.
      std::string err;
      IL_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      try {
        decode_body(B);
      } catch (const std::exception& e) {
        err = e.what();
      }
      cudaGraph_t graph = nullptr;
      cudaError_t e = cudaStreamEndCapture(s, &graph);
      if (err.empty() && e != cudaSuccess) err = str_cat("cudaStreamEndCapture: ", cudaGetErrorString(e));
      if (err.empty()) {
        cudaGraphExec_t exec = nullptr;
        e = cudaGraphInstantiate(&exec, graph, 0);
        if (e == cudaSuccess)
          g.exec = exec;
        else
          err = str_cat("cudaGraphInstantiate: ", cudaGetErrorString(e));
      }
      if (graph) cudaGraphDestroy(graph);
      if (!err.empty()) {
        cudaGetLastError();  // capture errors are not sticky; clear the last-error slot
        graphs_ok_ = false;
        release_graphs();
        graph_status_ = "eager: capturing the decode step failed: " + err;
      } else {
        graph_status_ = "captured: the decode step runs as a CUDA graph (one per batch size)";
      }
    }
    if (graphs_ok_) {
      Graph& g2 = graphs_[B];
      if (g2.exec) {
        IL_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(g2.exec), s));
        done = true;
      } else {
        ++g2.eager_runs;
      }
    }
  }
#endif
  if (!done) decode_body(B);

  for (int b = 0; b < B; ++b) {
    if (!active[(size_t)b]) continue;
    const int len = lens_[(size_t)b];
    hist_[(size_t)b * opt_.n_ctx + len] = tokens[(size_t)b];
    lens_[(size_t)b] = len + 1;
  }
}

void Model::sync_history(int B) {
  const size_t n_ctx = (size_t)opt_.n_ctx;
  for (int b = 0; b < B; ++b) {
    const int len = lens_[(size_t)b];
    int from = hist_synced_[(size_t)b];
    size_t lo = 0, hi = n_ctx;  // full row
    if (from >= 0) {
      lo = (size_t)from;
      hi = (size_t)len;
    }
    if (hi > lo)
      memcpy_any(prev_.data_as<int32_t>() + b * n_ctx + lo, prev_.device(), hist_.data() + b * n_ctx + lo,
                 Device::CPU, (hi - lo) * sizeof(int32_t), false);
    hist_synced_[(size_t)b] = len;
  }
}

std::vector<int32_t> Model::sample(int B, const ops::SamplingParams& params, const std::vector<uint64_t>& seeds,
                                   uint64_t step) {
  IL_CHECK_ARG(B >= 1 && B <= opt_.n_seqs, "B must be in [1, n_seqs=", opt_.n_seqs, "], got ", B);
  IL_CHECK_ARG(seeds.size() == (size_t)B || seeds.size() == 1, "seeds must hold 1 or B=", B, " values, got ",
               seeds.size());
  Tensor prev;
  if (params.repetition_penalty != 1.f) {
    sync_history(B);
    prev = prev_.slice_rows(0, B);
  }
  Tensor L = logits_.slice_rows(0, B), tok = tokens_.slice_rows(0, B);
  ops::SamplingParams sp = params;
  sp.offset = step;
  if (params.temperature <= 0.f) {
    sp.seed = seeds[0];
    ops::sample(L, sp, prev, tok);
  } else {
    // Each row alone (row 0 of its own call), so a sequence samples the same whether batched or not.
    for (int b = 0; b < B; ++b) {
      sp.seed = seeds[seeds.size() == 1 ? 0 : (size_t)b];
      Tensor lb = L.slice_rows(b, 1), tb = tok.slice_rows(b, 1);
      ops::sample(lb, sp, prev.defined() ? prev.slice_rows(b, 1) : Tensor(), tb);
    }
  }
  if (opt_.device == Device::CPU) return std::vector<int32_t>(tok_host_, tok_host_ + B);
  memcpy_any(tok_host_, Device::CPU, tok.data(), tok.device(), (size_t)B * sizeof(int32_t), true);
  return std::vector<int32_t>(tok_host_, tok_host_ + B);
}

void Model::copy_logits(int B, float* out) {
  IL_CHECK_ARG(B >= 1 && B <= R_, "B must be in [1, ", R_, "], got ", B);
  Tensor lg = logits_.slice_rows(0, B);
  memcpy_any(out, Device::CPU, lg.data(), lg.device(), lg.nbytes(), true);
}

}  // namespace inferlab
