#pragma once
// AdamW over a model's flat parameter buffer, global-norm gradient clipping and LR schedules.
// The moments live on the device of the parameters (fp32); on CUDA an update also writes the bf16
// compute weights in the same pass (optimizer_step). Offloaded, the moments and the fp32 master
// weights are host memory and the update runs on the CPU (optim/offload.h).
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/transformer.h"
#include "tensor/tensor.h"

namespace r1::optim {

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
};

// A parameter tensor's place in the flat buffer, and whether weight decay applies to it
// (by the usual rule: not to biases and norm weights, i.e. tensors of rank 1).
struct ParamSlice {
  std::string name;
  int64_t offset = 0, numel = 0;
  bool decay = true;
};

// An offloaded AdamW keeps its moments in pinned host memory and updates on the CPU (every core):
// the parameters it updates (the fp32 master weights) are host memory, while the gradients and the
// compute copy may be on the GPU: they travel in chunks of `chunk` elements, double-buffered so the
// copies overlap the update (optim/offload.h). The update is the CPU's, element for element.
struct OffloadConfig {
  bool enabled = false;
  int64_t chunk = int64_t(1) << 24;  // elements per copy: 64 MiB of f32 gradients
};

class OffloadStream;

class AdamW {
 public:
  // Moments (fp32, zero) on `device`, which the parameters of every step must share; offloaded,
  // in host memory whatever `device` is (see OffloadConfig).
  AdamW(std::vector<ParamSlice> slices, AdamWConfig cfg, Device device = Device::CPU, OffloadConfig offload = {});
  ~AdamW();
  AdamW(AdamW&&) noexcept;
  // One update of params (N) f32 from grads (N) f32; grads are multiplied by grad_scale first
  // (clipping, 1/accumulation). compute_copy (N, optional, bf16 or f32) receives the updated params
  // rounded to its dtype. Increments step().
  void step(Tensor params, const Tensor& grads, float lr, float grad_scale = 1.0f, Tensor compute_copy = {});
  // The update of elements [begin, begin + n) alone, n = grads.numel(): params is the whole flat
  // buffer (as in step), grads and compute_copy hold just those n elements (a staging chunk); all on
  // device(). Does not count a step: step() is this over every element, then the count.
  void update_range(Tensor params, int64_t begin, const Tensor& grads, Tensor compute_copy, float lr,
                    float grad_scale);
  int64_t steps_taken() const { return step_; }
  int64_t n_elements() const { return n_; }  // parameters it updates
  Device device() const { return device_; }  // where the moments are (CPU when offloaded)
  bool offloaded() const { return stream_ != nullptr; }
  // The offloaded step's chunking (null when not offloaded).
  const OffloadStream* offload_stream() const { return stream_.get(); }
  // Moments and step count, for exact resume (safetensors with tensors "m", "v", metadata "step"),
  // through host copies on any device.
  void save(const std::string& path) const;
  void load(const std::string& path);
  // Loads elements [offset, offset + N) of a saved state of `total` parameters: this optimizer's
  // shard of a whole model's state (ZeRO-1, train/data_parallel.h).
  // `moves`: the saved state is in another flat layout (model::layout_moves); empty: this one.
  void load(const std::string& path, int64_t total, int64_t offset, const std::vector<model::FlatMove>& moves = {});
  // Host copies of the moments (N each).
  void moments_host(float* m, float* v) const;
  const AdamWConfig& config() const { return cfg_; }

 private:
  std::vector<ParamSlice> slices_;
  AdamWConfig cfg_;
  Device device_;
  int64_t n_ = 0, step_ = 0;
  Buffer m_, v_;
  Tensor m_t_, v_t_;
  std::unique_ptr<OffloadStream> stream_;
};

// Writes moments m, v (n each, host memory) and the step count in AdamW's file format (what
// AdamW::save writes).
void save_adamw_state(const std::string& path, const float* m, const float* v, int64_t n, int64_t step);
// That file's metadata: format, step and the flat layout version (model::kParamLayoutVersion).
std::map<std::string, std::string> adamw_file_metadata(int64_t step);
// The flat layout version a saved state is in (1 when the file predates the record).
int saved_layout_version(const std::string& path);

// The parameter slices of a model for AdamW (no weight decay on rank-1 tensors: norms and biases).
std::vector<ParamSlice> param_slices(const model::Transformer& m);
// An AdamW for m: its slices, moments on its device (or offloaded: m's master copy must then be on
// the host, model::MasterPlace::Host).
AdamW make_adamw(const model::Transformer& m, AdamWConfig cfg, OffloadConfig offload = {});
// One update of m's master weights from its gradients, rounding them into the compute weights in
// the same pass when they are separate (CUDA).
void optimizer_step(AdamW& opt, model::Transformer& m, float lr, float grad_scale = 1.0f);

// Global L2 norm of the gradients (on their device), and the factor that scales them to at most
// max_norm (1 when max_norm <= 0 or the norm is already below). Non-finite norms are reported, not
// hidden.
struct ClipResult {
  double norm = 0.0;
  float scale = 1.0f;
};
// The factor clip_grad_norm scales the gradients by for a global norm `norm` (1 when it is within
// max_norm or max_norm is 0): every data-parallel level computes it with this one formula.
float clip_scale(double norm, double max_norm);
ClipResult clip_grad_norm(const Tensor& grads, double max_norm);

// The end of an optimizer step whose gradients have been accumulated into m.grads(): clip them to
// max_grad_norm and update m, unless the norm is non-finite or the caller's loss was
// (finite_loss = false); either way the gradients are zeroed for the next step.
struct UpdateResult {
  double grad_norm = 0.0;
  bool skipped = false;  // non-finite gradient norm or loss: no update
};
UpdateResult clip_and_step(AdamW& opt, model::Transformer& m, double lr, double max_grad_norm,
                           bool finite_loss = true);

struct LrSchedule {
  std::string kind = "cosine";  // "constant" | "cosine" | "linear"
  double lr = 1e-3;             // peak
  int64_t warmup_steps = 0;     // linear ramp from 0 to lr over these steps
  int64_t total_steps = 1;      // decay ends here
  double min_lr_ratio = 0.0;    // floor of the decay, as a fraction of lr
};
// The learning rate at 0-based step `step`; unknown kinds are an error at construction via
// validate().
double lr_at(const LrSchedule& s, int64_t step);
void validate(const LrSchedule& s);

}  // namespace r1::optim
