#include "model/weights.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "core/half.h"

#ifdef INFERLAB_WITH_CUDA
#include "core/cuda_check.h"
#endif
#include "kernels/qweight_layout.h"

namespace inferlab {

namespace {

constexpr size_t kAlign = 256;               // every tensor starts on a 256-byte boundary of the arena
constexpr size_t kStageBytes = 32u << 20;    // each of the two pinned staging buffers

size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// ---- validation helpers (messages name the tensor) ----

const GGUFTensorInfo& need(const GGUFFile& f, const std::string& name) {
  const GGUFTensorInfo* t = f.find_tensor(name);
  if (!t) throw GGUFError(str_cat("tensor ", name, " is missing from the file (needed by the ", f.architecture(),
                                  " architecture)"));
  return *t;
}

// ggml shapes may carry trailing 1s; drop them.
std::vector<int64_t> squeeze(const std::vector<int64_t>& ne) {
  std::vector<int64_t> s = ne;
  while (s.size() > 1 && s.back() == 1) s.pop_back();
  return s;
}

void check_matrix(const GGUFTensorInfo& t, int64_t k, int64_t n) {
  const auto ne = squeeze(t.ne);
  if (ne.size() != 2 || ne[0] != k || ne[1] != n)
    throw GGUFError(str_cat("tensor ", t.name, " has shape ", shape_str(t.ne), " (ggml order [in, out]) but the ",
                            "metadata implies [", k, ", ", n, "]"));
  const GGMLTypeTraits* tr = ggml_type_traits((int32_t)t.type);
  if (!tr) throw GGUFError(str_cat("tensor ", t.name, " has unknown type id ", (int)t.type));
  if (!tr->can_dequantize || !matmul_supports(t.type))
    throw NotSupportedError(str_cat("tensor ", t.name, " has type ", tr->name,
                                    ", which inferlab cannot multiply; use a file with another quantization"));
  if (k % tr->block_size != 0)
    throw GGUFError(str_cat("tensor ", t.name, " rows have ", k, " elements, not a multiple of the ", tr->name,
                            " block size ", tr->block_size));
  const uint64_t want = (uint64_t)ggml_row_size(t.type, k) * (uint64_t)n;
  if (t.nbytes != want)
    throw GGUFError(str_cat("tensor ", t.name, " holds ", t.nbytes, " bytes; its shape and type need ", want));
}

void check_vector(const GGUFTensorInfo& t, int64_t n) {
  const auto ne = squeeze(t.ne);
  if (ne.size() != 1 || ne[0] != n)
    throw GGUFError(str_cat("tensor ", t.name, " has shape ", shape_str(t.ne), " but the metadata implies [", n, "]"));
  if (t.type != GGMLType::F32 && t.type != GGMLType::F16 && t.type != GGMLType::BF16)
    throw GGUFError(str_cat("tensor ", t.name, " is a vector of type ", ggml_type_traits((int32_t)t.type)
                                                                             ? ggml_type_traits((int32_t)t.type)->name
                                                                             : "?",
                            "; expected F32, F16 or BF16"));
}

float vector_element(const GGUFTensorInfo& t, int64_t i) {
  if (t.type == GGMLType::F32) {
    float v;
    std::memcpy(&v, t.data + i * 4, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, t.data + i * 2, 2);
  return t.type == GGMLType::F16 ? fp16_to_f32(h) : bf16_to_f32(h);
}

// A float vector (norm weight or bias) as F32 on the arena's device, optionally the rows [start, start+n).
Tensor load_vector(WeightArena& a, const GGUFTensorInfo& t, int64_t start, int64_t n) {
  if (t.type == GGMLType::F32)
    return a.place({{t.data + start * 4, (size_t)n * 4}}, {n}, DType::F32);
  std::vector<float> v((size_t)n);
  const uint16_t* src = reinterpret_cast<const uint16_t*>(t.data) + start;
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + i, 2);
    v[(size_t)i] = t.type == GGMLType::F16 ? fp16_to_f32(h) : bf16_to_f32(h);
  }
  return a.place_f32(std::move(v), {n});
}

Tensor vec(WeightArena& a, const GGUFFile& f, const std::string& name, int64_t n) {
  const GGUFTensorInfo& t = need(f, name);
  check_vector(t, n);
  return load_vector(a, t, 0, n);
}

// A QWeight [n, k] whose GGUF-layout bytes are the concatenation of `parts` (row blocks of one type), in the
// layout the device's matmul kernels use: the file's bytes (layout 0) on the CPU and for float types, the
// split layout (qweight_layout.h) for quantized types on CUDA.
QWeight make_qweight(WeightArena& a, const std::string& name, GGMLType type, int64_t n, int64_t k,
                     std::vector<WeightArena::Range> parts) {
  QWeight w;
  w.name = name;
  w.type = type;
  w.n = n;
  w.k = k;
  const bool split = a.device() == Device::CUDA && split_info(type).payload_bytes > 0;
  if (!split) {
    size_t total = 0;
    for (const auto& p : parts) total += p.nbytes;
    w.data = a.place(parts, {(int64_t)total}, DType::U8);
    w.layout = kLayoutGGUF;
    return w;
  }
  const int64_t nbytes = split_total_bytes(type, n, k);
  w.data = a.place_produced(
      (size_t)nbytes,
      [parts, type, n, k](uint8_t* dst) {
        if (parts.size() == 1) {
          split_from_gguf(type, n, k, parts[0].src, dst);
          return;
        }
        std::vector<uint8_t> cat;
        for (const auto& p : parts) cat.insert(cat.end(), p.src, p.src + p.nbytes);
        split_from_gguf(type, n, k, cat.data(), dst);
      },
      {nbytes}, DType::U8);
  w.layout = kLayoutSplit;
  return w;
}

// Rows [row0, row0 + n) of a validated matrix as a QWeight [n, k].
QWeight qrows(WeightArena& a, const GGUFTensorInfo& t, const std::string& name, int64_t row0, int64_t n) {
  const int64_t k = squeeze(t.ne)[0];
  const size_t rb = (size_t)ggml_row_size(t.type, k);
  return make_qweight(a, name, t.type, n, k, {{t.data + rb * (size_t)row0, rb * (size_t)n}});
}

QWeight mat(WeightArena& a, const GGUFFile& f, const std::string& name, int64_t k, int64_t n) {
  const GGUFTensorInfo& t = need(f, name);
  check_matrix(t, k, n);
  return qrows(a, t, name, 0, n);
}

[[maybe_unused]] void draw_progress(size_t done, size_t total, double seconds) {
  const int width = 30;
  const double frac = total ? (double)done / (double)total : 1.0;
  const int fill = (int)(frac * width + 0.5);
  char bar[width + 1];
  for (int i = 0; i < width; ++i) bar[i] = i < fill ? '#' : '.';
  bar[width] = 0;
  std::fprintf(stderr, "\rloading weights [%s] %3d%%  %zu/%zu MiB  %.1fs", bar, (int)(frac * 100 + 0.5),
               done >> 20, total >> 20, seconds);
  if (done >= total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

}  // namespace

// ============================== WeightArena ==============================

WeightArena::WeightArena(Device device, std::shared_ptr<GGUFFile> file, uint8_t* base, std::shared_ptr<void> keeper)
    : device_(device), file_(std::move(file)), base_(base), keeper_(std::move(keeper)) {}

size_t WeightArena::reserve(size_t nbytes) {
  const size_t off = used_;
  used_ = align_up(used_ + nbytes);
  return off;
}

Tensor WeightArena::place(const std::vector<Range>& parts, const std::vector<int64_t>& shape, DType dtype) {
  size_t total = 0;
  for (const Range& r : parts) total += r.nbytes;
  const bool from_file = parts.size() == 1 && file_ && parts[0].src >= file_->base() &&
                         parts[0].src + parts[0].nbytes <= file_->base() + file_->file_size();
  if (device_ == Device::CPU && from_file) {
    // Zero copy: the tensor points into the mapping and keeps the file open.
    mapped_ += total;
    std::shared_ptr<GGUFFile> keep = file_;
    return Tensor::from_blob(const_cast<uint8_t*>(parts[0].src), shape, dtype, Device::CPU,
                             [keep](void*) {});
  }
  const size_t off = reserve(total);
  if (!base_) return Tensor::from_blob(nullptr, shape, dtype, device_);  // dry run: never dereferenced
  size_t o = off;
  for (const Range& r : parts) {
    if (device_ == Device::CPU)
      std::memcpy(base_ + o, r.src, r.nbytes);
    else
      pieces_.push_back({o, r.nbytes, r.src, nullptr, {}});
    o += r.nbytes;
  }
  std::shared_ptr<void> keep = keeper_;
  return Tensor::from_blob(base_ + off, shape, dtype, device_, [keep](void*) {});
}

Tensor WeightArena::place_f32(std::vector<float> data, const std::vector<int64_t>& shape) {
  auto v = std::make_shared<std::vector<float>>(std::move(data));
  owned_.push_back(v);
  const size_t nbytes = v->size() * sizeof(float);
  const size_t off = reserve(nbytes);
  if (!base_) return Tensor::from_blob(nullptr, shape, DType::F32, device_);
  if (device_ == Device::CPU)
    std::memcpy(base_ + off, v->data(), nbytes);
  else
    pieces_.push_back({off, nbytes, reinterpret_cast<const uint8_t*>(v->data()), nullptr, {}});
  std::shared_ptr<void> keep = keeper_;
  return Tensor::from_blob(base_ + off, shape, DType::F32, device_, [keep](void*) {});
}

Tensor WeightArena::place_produced(size_t nbytes, std::function<void(uint8_t*)> produce,
                                   const std::vector<int64_t>& shape, DType dtype) {
  const size_t off = reserve(nbytes);
  if (!base_) return Tensor::from_blob(nullptr, shape, dtype, device_);
  if (device_ == Device::CPU) {
    produce(base_ + off);
  } else {
    Piece pc{off, nbytes, nullptr, std::move(produce), {}};
    pieces_.push_back(std::move(pc));
  }
  std::shared_ptr<void> keep = keeper_;
  return Tensor::from_blob(base_ + off, shape, dtype, device_, [keep](void*) {});
}

void WeightArena::sort_pieces() {
  std::sort(pieces_.begin(), pieces_.end(), [](const Piece& x, const Piece& y) { return x.dst_off < y.dst_off; });
}

void WeightArena::assemble(size_t win, size_t wend, uint8_t* out, size_t& cursor) {
  // The arena image [win, wend) from the pieces overlapping it (gaps are alignment padding, left as is).
  while (cursor < pieces_.size() && pieces_[cursor].dst_off + pieces_[cursor].nbytes <= win) {
    std::vector<uint8_t>().swap(pieces_[cursor].made);  // a produced piece is fully streamed: free it
    ++cursor;
  }
  for (size_t p = cursor; p < pieces_.size() && pieces_[p].dst_off < wend; ++p) {
    Piece& pc = pieces_[p];
    if (!pc.src) {  // produce (e.g. repack) on first use, while the other buffer's copy is in flight
      pc.made.resize(pc.nbytes);
      pc.produce(pc.made.data());
      pc.src = pc.made.data();
    }
    const size_t lo = std::max(win, pc.dst_off), hi = std::min(wend, pc.dst_off + pc.nbytes);
    if (hi > lo) std::memcpy(out + (lo - win), pc.src + (lo - pc.dst_off), hi - lo);
  }
}

void WeightArena::upload_to_host_image(uint8_t* image, size_t window) {
  IL_CHECK_ARG(window > 0, "window must be positive");
  sort_pieces();
  std::vector<uint8_t> stage(window);
  size_t cursor = 0;
  for (size_t win = 0; win < used_; win += window) {
    const size_t wend = std::min(used_, win + window);
    assemble(win, wend, stage.data(), cursor);
    std::memcpy(image + win, stage.data(), wend - win);
  }
  pieces_.clear();
  owned_.clear();
}

void WeightArena::upload(bool progress) {
  if (device_ == Device::CPU || !base_) {
    owned_.clear();
    return;
  }
#ifdef INFERLAB_WITH_CUDA
  sort_pieces();
  const auto t0 = std::chrono::steady_clock::now();
  const size_t total = used_;
  // Two pinned buffers and an event each: buffer b is refilled only after its previous copy has finished,
  // so the CPU reads the mapping (page faults included) while the other buffer's copy is in flight.
  uint8_t* stage[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
  auto cleanup = [&]() {
    for (int b = 0; b < 2; ++b) {
      if (done[b]) cudaEventDestroy(done[b]);
      if (stage[b]) cudaFreeHost(stage[b]);
    }
  };
  try {
    for (int b = 0; b < 2; ++b) {
      IL_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&stage[b]), kStageBytes, cudaHostAllocDefault));
      IL_CUDA_CHECK(cudaEventCreateWithFlags(&done[b], cudaEventDisableTiming));
    }
    cudaStream_t s = current_stream();
    size_t piece = 0;  // first piece that may overlap the current window
    int b = 0;
    auto last_draw = t0;
    for (size_t win = 0; win < total; win += kStageBytes, b ^= 1) {
      const size_t wend = std::min(total, win + kStageBytes);
      IL_CUDA_CHECK(cudaEventSynchronize(done[b]));  // this buffer's previous copy is finished
      assemble(win, wend, stage[b], piece);
      IL_CUDA_CHECK(cudaMemcpyAsync(base_ + win, stage[b], wend - win, cudaMemcpyHostToDevice, s));
      IL_CUDA_CHECK(cudaEventRecord(done[b], s));
      if (progress) {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_draw > std::chrono::milliseconds(100) || wend == total) {
          draw_progress(wend, total, std::chrono::duration<double>(now - t0).count());
          last_draw = now;
        }
      }
    }
    IL_CUDA_CHECK(cudaStreamSynchronize(s));
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
#endif
  pieces_.clear();
  owned_.clear();
}

// ============================== build_weights ==============================

ModelWeights build_weights(const GGUFFile& f, const ModelConfig& c, WeightArena& a, bool fuse_gate_up,
                           bool fuse_qkv) {
  const ArchQuirks& q = c.quirks;
  const int64_t D = c.d_model, F = c.d_ff, V = c.vocab;
  const int64_t Nq = (int64_t)c.n_heads * c.head_dim, Nkv = (int64_t)c.n_kv_heads * c.head_dim;
  const bool ln = q.norm == NormKind::Layer;
  ModelWeights w;

  w.tok_embd = mat(a, f, "token_embd.weight", D, V);
  if (q.learned_positions) {
    const GGUFTensorInfo& t = need(f, "position_embd.weight");
    const auto ne = squeeze(t.ne);
    if (ne.size() != 2 || ne[0] != D || ne[1] < c.n_ctx_train)
      throw GGUFError(str_cat("tensor position_embd.weight has shape ", shape_str(t.ne), " but the metadata implies [",
                              D, ", ", c.n_ctx_train, "]"));
    check_matrix(t, D, ne[1]);
    w.pos_embd = qrows(a, t, "position_embd.weight", 0, ne[1]);
  }
  w.out_norm_w = vec(a, f, "output_norm.weight", D);
  if (ln) w.out_norm_b = vec(a, f, "output_norm.bias", D);
  if (f.find_tensor("output.weight")) {
    w.output = mat(a, f, "output.weight", D, V);
  } else if (q.tied_embeddings) {
    w.tied = true;
    w.output = w.tok_embd;
  } else {
    need(f, "output.weight");  // throws naming it
  }

  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = str_cat("blk.", l, ".");
    LayerWeights L;
    L.attn_norm_w = vec(a, f, p + "attn_norm.weight", D);
    if (ln) L.attn_norm_b = vec(a, f, p + "attn_norm.bias", D);

    // q/k/v as one [Nq + 2 Nkv, D] weight with rows [q | k | v] when the file has it fused (phi3, gpt2), or on
    // the device when the three separate tensors share a type (one matmul instead of three; a one-token
    // decode then needs no split at all). Otherwise three weights.
    const bool in_file_fused = f.find_tensor(p + "attn_qkv.weight") != nullptr &&
                               (q.qkv_layout == QKVLayout::Fused || !f.find_tensor(p + "attn_q.weight"));
    const bool qkv_bias = q.qkv_bias || q.linear_bias;
    if (in_file_fused) {
      L.qkv_fused = true;
      L.wqkv = mat(a, f, p + "attn_qkv.weight", D, Nq + 2 * Nkv);
      if (qkv_bias) L.bqkv = vec(a, f, p + "attn_qkv.bias", Nq + 2 * Nkv);
    } else {
      const GGUFTensorInfo& tq = need(f, p + "attn_q.weight");
      const GGUFTensorInfo& tk = need(f, p + "attn_k.weight");
      const GGUFTensorInfo& tv = need(f, p + "attn_v.weight");
      check_matrix(tq, D, Nq);
      check_matrix(tk, D, Nkv);
      check_matrix(tv, D, Nkv);
      const GGUFTensorInfo *bq = nullptr, *bk = nullptr, *bv = nullptr;
      if (qkv_bias) {
        bq = &need(f, p + "attn_q.bias");
        bk = &need(f, p + "attn_k.bias");
        bv = &need(f, p + "attn_v.bias");
        check_vector(*bq, Nq);
        check_vector(*bk, Nkv);
        check_vector(*bv, Nkv);
      }
      if (fuse_qkv && tq.type == tk.type && tq.type == tv.type) {
        L.qkv_fused = true;
        L.wqkv = make_qweight(a, p + "attn_q+k+v.weight", tq.type, Nq + 2 * Nkv, D,
                              {{tq.data, (size_t)tq.nbytes}, {tk.data, (size_t)tk.nbytes}, {tv.data, (size_t)tv.nbytes}});
        if (qkv_bias) {
          std::vector<float> cat;
          for (const GGUFTensorInfo* b : {bq, bk, bv}) {
            const auto n = squeeze(b->ne)[0];
            for (int64_t i = 0; i < n; ++i) cat.push_back(vector_element(*b, i));
          }
          L.bqkv = a.place_f32(std::move(cat), {Nq + 2 * Nkv});
        }
      } else {
        L.wq = qrows(a, tq, p + "attn_q.weight", 0, Nq);
        L.wk = qrows(a, tk, p + "attn_k.weight", 0, Nkv);
        L.wv = qrows(a, tv, p + "attn_v.weight", 0, Nkv);
        if (qkv_bias) {
          L.bq = load_vector(a, *bq, 0, Nq);
          L.bk = load_vector(a, *bk, 0, Nkv);
          L.bv = load_vector(a, *bv, 0, Nkv);
        }
      }
    }
    L.wo = mat(a, f, p + "attn_output.weight", Nq, D);
    if (q.linear_bias) L.bo = vec(a, f, p + "attn_output.bias", D);

    L.ffn_norm_w = vec(a, f, p + "ffn_norm.weight", D);
    if (ln) L.ffn_norm_b = vec(a, f, p + "ffn_norm.bias", D);

    if (q.mlp == MlpKind::SwiGLU) {
      if (q.fused_gate_up) {
        L.gate_up_fused = true;
        L.w_gate_up = mat(a, f, p + "ffn_up.weight", D, 2 * F);
      } else {
        const GGUFTensorInfo& g = need(f, p + "ffn_gate.weight");
        const GGUFTensorInfo& u = need(f, p + "ffn_up.weight");
        check_matrix(g, D, F);
        check_matrix(u, D, F);
        if (fuse_gate_up && g.type == u.type) {
          // One [2F, D] weight: one matmul instead of two, then swiglu_fused.
          L.gate_up_fused = true;
          L.w_gate_up = make_qweight(a, p + "ffn_gate+up.weight", g.type, 2 * F, D,
                                     {{g.data, (size_t)g.nbytes}, {u.data, (size_t)u.nbytes}});
        } else {
          L.w_gate = qrows(a, g, p + "ffn_gate.weight", 0, F);
          L.w_up = qrows(a, u, p + "ffn_up.weight", 0, F);
        }
      }
    } else {
      L.w_up = mat(a, f, p + "ffn_up.weight", D, F);
      if (q.linear_bias) L.b_up = vec(a, f, p + "ffn_up.bias", F);
    }
    L.w_down = mat(a, f, p + "ffn_down.weight", F, D);
    if (q.linear_bias) L.b_down = vec(a, f, p + "ffn_down.bias", D);
    w.layers.push_back(std::move(L));
  }
  w.device_bytes = a.bytes();
  w.mapped_bytes = a.mapped_bytes();
  return w;
}

// ============================== testing aid ==============================

std::vector<DeviceWeightImage> emulate_device_weights(const std::string& path, size_t window) {
  std::shared_ptr<GGUFFile> f = GGUFFile::open(path);
  const ModelConfig c = ModelConfig::from_gguf(*f);
  WeightArena dry(Device::CUDA, f, nullptr, nullptr);
  build_weights(*f, c, dry, /*fuse_gate_up=*/true, /*fuse_qkv=*/true);
  std::vector<uint8_t> image(dry.bytes() + 1, 0xCD);
  WeightArena live(Device::CUDA, f, image.data(), nullptr);
  const ModelWeights w = build_weights(*f, c, live, /*fuse_gate_up=*/true, /*fuse_qkv=*/true);
  live.upload_to_host_image(image.data(), window);

  std::vector<DeviceWeightImage> out;
  auto bytes_of = [&](const Tensor& t) {
    const uint8_t* p = static_cast<const uint8_t*>(t.data());
    IL_CHECK_ARG(p >= image.data() && p + t.nbytes() <= image.data() + image.size(), "tensor outside the arena");
    return std::vector<uint8_t>(p, p + t.nbytes());
  };
  auto addq = [&](const QWeight& q) {
    if (!q.data.defined()) return;
    std::vector<uint8_t> raw = bytes_of(q.data);
    DeviceWeightImage d{q.name, q.type, q.n, q.k, q.layout, {}};
    if (q.layout == kLayoutSplit) {
      d.gguf_bytes.resize((size_t)(q.n * q.row_bytes()));
      gguf_from_split(q.type, q.n, q.k, raw.data(), d.gguf_bytes.data());
    } else {
      d.gguf_bytes = std::move(raw);
    }
    out.push_back(std::move(d));
  };
  auto addv = [&](const std::string& name, const Tensor& t) {
    if (!t.defined()) return;
    out.push_back({name, GGMLType::F32, 1, t.numel(), kLayoutGGUF, bytes_of(t)});
  };
  addq(w.tok_embd);
  addq(w.pos_embd);
  addv("output_norm.weight", w.out_norm_w);
  addv("output_norm.bias", w.out_norm_b);
  if (!w.tied) addq(w.output);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    const std::string p = str_cat("blk.", l, ".");
    addv(p + "attn_norm.weight", L.attn_norm_w);
    addv(p + "attn_norm.bias", L.attn_norm_b);
    for (const QWeight* q : {&L.wqkv, &L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate_up, &L.w_gate, &L.w_up, &L.w_down})
      addq(*q);
    addv(L.wqkv.name.find("q+k+v") != std::string::npos ? p + "attn_q+k+v.bias" : p + "attn_qkv.bias", L.bqkv);
    addv(p + "attn_q.bias", L.bq);
    addv(p + "attn_k.bias", L.bk);
    addv(p + "attn_v.bias", L.bv);
    addv(p + "attn_output.bias", L.bo);
    addv(p + "ffn_norm.weight", L.ffn_norm_w);
    addv(p + "ffn_norm.bias", L.ffn_norm_b);
    addv(p + "ffn_up.bias", L.b_up);
    addv(p + "ffn_down.bias", L.b_down);
  }
  return out;
}

}  // namespace inferlab
