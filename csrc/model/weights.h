// Model weights: validated against the metadata, placed in one device arena, uploaded from the
// GGUF mapping through a pinned double buffer (CUDA) or used in place from the mapping (CPU).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "kernels/qweight.h"
#include "model/config.h"

namespace inferlab {

struct LayerWeights {
  Tensor attn_norm_w, attn_norm_b;  // [D] f32; _b only with LayerNorm
  // q/k/v: one weight [Hq*hd + 2*Hkv*hd, D] with rows [q | k | v] (qkv_fused) or three weights.
  bool qkv_fused = false;
  QWeight wqkv;                     // [Nq + 2 Nkv, D]
  Tensor bqkv;                      // [Nq + 2 Nkv] f32 or undefined
  QWeight wq, wk, wv;               // [Hq*hd, D], [Hkv*hd, D], [Hkv*hd, D]
  Tensor bq, bk, bv;                // [Hq*hd], [Hkv*hd], [Hkv*hd] f32 or undefined
  QWeight wo;                       // [D, Hq*hd]
  Tensor bo;                        // [D] or undefined
  Tensor ffn_norm_w, ffn_norm_b;    // [D] f32
  // SwiGLU: either one [2F, D] weight holding [gate | up] (gate_up_fused) or separate gate/up [F, D].
  bool gate_up_fused = false;
  QWeight w_gate_up, w_gate, w_up;
  Tensor b_up;                      // [F] (GELU MLP with biases)
  QWeight w_down;                   // [D, F]
  Tensor b_down;                    // [D] or undefined
};

struct ModelWeights {
  QWeight tok_embd;                 // [V, D]
  QWeight pos_embd;                 // [n_ctx_train, D] (learned positions) or empty
  Tensor out_norm_w, out_norm_b;    // [D]
  QWeight output;                   // [V, D]; shares tok_embd's data when tied
  bool tied = false;
  std::vector<LayerWeights> layers;
  size_t device_bytes = 0;          // bytes allocated for weights on the device (CPU: copies made, not the mapping)
  size_t mapped_bytes = 0;          // CPU: bytes used in place from the file mapping
};

// Where the weight bytes go. Run build_weights() once with a dry-run arena to size it, then with a live
// one (the same code computes the same offsets), then upload().
class WeightArena {
 public:
  // base == nullptr: dry run (sizes only, no memory touched). Otherwise `base` holds bytes() bytes on `device`.
  WeightArena(Device device, std::shared_ptr<GGUFFile> file, uint8_t* base, std::shared_ptr<void> keeper);

  // A tensor whose bytes are the concatenation of `parts` (host ranges). On the CPU a single range from the
  // file mapping is used in place (zero copy).
  struct Range {
    const uint8_t* src;
    size_t nbytes;
  };
  Tensor place(const std::vector<Range>& parts, const std::vector<int64_t>& shape, DType dtype);
  // A float32 tensor from converted host data (kept alive until upload).
  Tensor place_f32(std::vector<float> data, const std::vector<int64_t>& shape);
  // A tensor of `nbytes` bytes written by `produce(dst)` (e.g. a weight repacked for the device's kernels).
  // On the device, produce() runs during upload() into a host buffer that is then streamed like the rest.
  Tensor place_produced(size_t nbytes, std::function<void(uint8_t*)> produce, const std::vector<int64_t>& shape,
                        DType dtype);

  Device device() const { return device_; }
  size_t bytes() const { return used_; }
  size_t mapped_bytes() const { return mapped_; }

  // Copies every recorded piece to the device: chunks of the arena image are assembled in one of two
  // pinned buffers while the other is in flight (cudaMemcpyAsync + events). No-op on the CPU.
  // `progress`: draw a progress bar on stderr.
  void upload(bool progress);
  // Testing aid: the same windowed assembly as upload(), into host memory `image` (bytes() bytes) with
  // `window`-byte windows instead of pinned buffers and copies. For an arena built for Device::CUDA whose base
  // is host memory: checks the device image of the weights without a GPU.
  void upload_to_host_image(uint8_t* image, size_t window);

 private:
  struct Piece {
    size_t dst_off;
    size_t nbytes;
    const uint8_t* src;                        // raw bytes, or the produced buffer once made
    std::function<void(uint8_t*)> produce;     // set for produced pieces
    std::vector<uint8_t> made;                 // produced bytes (freed once streamed)
  };
  size_t reserve(size_t nbytes);
  void sort_pieces();
  void assemble(size_t win, size_t wend, uint8_t* out, size_t& cursor);
  Device device_;
  std::shared_ptr<GGUFFile> file_;
  uint8_t* base_;
  std::shared_ptr<void> keeper_;  // owns the arena memory; every tensor placed holds a reference
  size_t used_ = 0;
  size_t mapped_ = 0;
  std::vector<Piece> pieces_;
  std::vector<std::shared_ptr<std::vector<float>>> owned_;
};

// Validates every tensor the forward pass needs against `cfg` (GGUFError naming the tensor when missing or of
// the wrong shape; NotSupportedError for a type inferlab cannot multiply) and places it in `arena`.
// fuse_gate_up / fuse_qkv: concatenate separate gate/up (q/k/v) weights of one type into one weight (a copy; the
// model does it on CUDA, where one launch instead of two or three matters). Weights fused in the file are always
// used fused.
ModelWeights build_weights(const GGUFFile& f, const ModelConfig& cfg, WeightArena& arena, bool fuse_gate_up,
                           bool fuse_qkv);

// Testing aid: every weight of `path` as upload() would place it on a CUDA device, assembled on the host through
// `window`-byte staging windows, converted back to GGUF layout: (name, type, n, k, layout, GGUF bytes).
// Float vectors (norms, biases) come back as their float32 bytes with type F32, n = 1.
struct DeviceWeightImage {
  std::string name;
  GGMLType type;
  int64_t n, k;
  int32_t layout;
  std::vector<uint8_t> gguf_bytes;
};
std::vector<DeviceWeightImage> emulate_device_weights(const std::string& path, size_t window);

}  // namespace inferlab
