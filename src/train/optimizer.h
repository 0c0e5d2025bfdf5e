#pragma once
// AdamW over a model's flat parameter buffer, global-norm gradient clipping and LR schedules.
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace r1::train {

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

class AdamW {
 public:
  AdamW(std::vector<ParamSlice> slices, AdamWConfig cfg);
  // One update of params (N) from grads (N); grads are multiplied by grad_scale first (clipping,
  // 1/accumulation). Increments step().
  void step(Tensor params, const Tensor& grads, float lr, float grad_scale = 1.0f);
  int64_t steps_taken() const { return step_; }
  // Moments and step count, for exact resume (safetensors with tensors "m", "v", metadata "step").
  void save(const std::string& path) const;
  void load(const std::string& path);
  const AdamWConfig& config() const { return cfg_; }

 private:
  std::vector<ParamSlice> slices_;
  AdamWConfig cfg_;
  int64_t n_ = 0, step_ = 0;
  std::vector<float> m_, v_;
};

// Global L2 norm of the gradients, and the factor that scales them to at most max_norm
// (1 when max_norm <= 0 or the norm is already below). Non-finite norms are reported, not hidden.
struct ClipResult {
  double norm = 0.0;
  float scale = 1.0f;
};
ClipResult clip_grad_norm(const Tensor& grads, double max_norm);

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

}  // namespace r1::train
