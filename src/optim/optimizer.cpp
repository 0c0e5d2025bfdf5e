#include "optim/optimizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <numbers>

#include "base/error.h"
#include "kernels/ops.h"
#include "model/safetensors.h"
#include "optim/offload.h"
#include "tensor/device_memory.h"

namespace r1::optim {

// ---------------------------------------------------------------------------------------------
// AdamW

AdamW::AdamW(std::vector<ParamSlice> slices, AdamWConfig cfg, Device device, OffloadConfig offload)
    : slices_(std::move(slices)), cfg_(cfg), device_(offload.enabled ? Device::CPU : device) {
  R1_CHECK(cfg_.beta1 >= 0.0f && cfg_.beta1 < 1.0f, "AdamW: beta1 {} must be in [0, 1)", cfg_.beta1);
  R1_CHECK(cfg_.beta2 >= 0.0f && cfg_.beta2 < 1.0f, "AdamW: beta2 {} must be in [0, 1)", cfg_.beta2);
  R1_CHECK(cfg_.eps >= 0.0f && std::isfinite(cfg_.eps), "AdamW: eps {} must be finite and >= 0", cfg_.eps);
  R1_CHECK(cfg_.weight_decay >= 0.0f && std::isfinite(cfg_.weight_decay),
           "AdamW: weight_decay {} must be finite and >= 0", cfg_.weight_decay);
  for (const ParamSlice& s : slices_) {
    R1_CHECK(s.offset >= 0 && s.numel >= 0, "AdamW: slice '{}' has offset {} and numel {}", s.name, s.offset,
             s.numel);
    n_ = std::max(n_, s.offset + s.numel);
  }
  // In offset order (the update of a range walks them so); a parameter covered twice would be
  // updated twice per step: refuse overlapping slices.
  std::erase_if(slices_, [](const ParamSlice& s) { return s.numel == 0; });
  std::sort(slices_.begin(), slices_.end(), [](const ParamSlice& a, const ParamSlice& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < slices_.size(); ++i) {
    const ParamSlice& a = slices_[i - 1];
    const ParamSlice& b = slices_[i];
    R1_CHECK(a.offset + a.numel <= b.offset, "AdamW: slice '{}' [{}, {}) overlaps slice '{}' [{}, {})", a.name,
             a.offset, a.offset + a.numel, b.name, b.offset, b.offset + b.numel);
  }
  const size_t bytes = size_t(n_) * sizeof(float);
  if (offload.enabled) {
    stream_ = std::make_unique<OffloadStream>(offload.chunk);
    m_ = Buffer::pinned(bytes);
    v_ = Buffer::pinned(bytes);
  } else {
    m_ = Buffer(bytes, device_);
    v_ = Buffer(bytes, device_);
  }
  m_t_ = Tensor(m_.data(), DType::F32, {n_}, device_);
  v_t_ = Tensor(v_.data(), DType::F32, {n_}, device_);
  ops::zero(m_t_);  // in parallel on the host: tens of GB when offloaded
  ops::zero(v_t_);
}

AdamW::~AdamW() = default;
AdamW::AdamW(AdamW&&) noexcept = default;

void AdamW::step(Tensor params, const Tensor& grads, float lr, float grad_scale, Tensor compute_copy) {
  R1_CHECK(params.dtype == DType::F32 && grads.dtype == DType::F32,
           "AdamW::step: params {} and grads {} must be f32", params.describe(), grads.describe());
  // The moments live on device_, so the parameters must too; offloaded, the gradients and the
  // compute copy may be anywhere (they are staged through host memory).
  R1_CHECK(params.device == device_ && (offloaded() || grads.device == device_),
           "AdamW::step: params {} and grads {} must be on the optimizer's device ({})", params.describe(),
           grads.describe(), device_name(device_));
  R1_CHECK(params.numel() == grads.numel(), "AdamW::step: params {} and grads {} differ in numel",
           params.describe(), grads.describe());
  R1_CHECK(compute_copy.empty() ||
               (compute_copy.numel() == params.numel() && (offloaded() || compute_copy.device == device_)),
           "AdamW::step: compute copy {} does not match params {}", compute_copy.describe(), params.describe());
  const int64_t n = params.numel();
  for (const ParamSlice& s : slices_)
    R1_CHECK(s.offset + s.numel <= n, "AdamW::step: slice '{}' [{}, {}) lies outside params of numel {}", s.name,
             s.offset, s.offset + s.numel, n);
  if (offloaded()) {
    stream_->run(grads.reshape({n}), compute_copy.empty() ? Tensor() : compute_copy.reshape({n}),
                 [&](int64_t begin, const Tensor& g, Tensor cc) {
                   update_range(params, begin, g, cc, lr, grad_scale);
                 });
  } else {
    update_range(params, 0, grads, compute_copy, lr, grad_scale);
  }
  ++step_;
}

void AdamW::update_range(Tensor params, int64_t begin, const Tensor& grads, Tensor compute_copy, float lr,
                         float grad_scale) {
  const int64_t n = grads.numel(), end = begin + n;
  R1_CHECK(begin >= 0 && end <= params.numel(), "AdamW: elements [{}, {}) outside params {}", begin, end,
           params.describe());
  // Flat 1-D views: rows() of them are the slices' parts in [begin, end).
  const Tensor p = params.reshape({params.numel()}), g = grads.reshape({n});
  const Tensor cc = compute_copy.empty() ? Tensor() : compute_copy.reshape({n});
  ops::AdamWParams hp;
  hp.lr = lr;
  hp.beta1 = cfg_.beta1;
  hp.beta2 = cfg_.beta2;
  hp.eps = cfg_.eps;
  hp.step = step_ + 1;
  hp.grad_scale = grad_scale;
  // A staged compute copy (offloaded) is uploaded whole: the elements between slices (alignment
  // padding) get their parameter rounded, as the compute copy holds it, not what the buffer held.
  const bool fill_gaps = offloaded() && !cc.empty();
  int64_t done = begin;
  for (const ParamSlice& s : slices_) {
    const int64_t a = std::max(s.offset, begin), b = std::min(s.offset + s.numel, end);
    if (b <= a) continue;
    if (fill_gaps && a > done) ops::convert(cc.rows(done - begin, a - begin), p.rows(done, a));
    hp.weight_decay = s.decay ? cfg_.weight_decay : 0.0f;
    ops::adamw_update(p.rows(a, b), g.rows(a - begin, b - begin), m_t_.rows(a, b), v_t_.rows(a, b), hp,
                      cc.empty() ? Tensor() : cc.rows(a - begin, b - begin));
    done = b;
  }
  if (fill_gaps && end > done) ops::convert(cc.rows(done - begin, end - begin), p.rows(done, end));
}

namespace {

// The string metadata of a .safetensors file: 8-byte little-endian header length, then the JSON
// header whose "__metadata__" holds it. Reads only the header, never the tensor data.
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  R1_CHECK(in, "cannot open optimizer state {}: {}", path, std::strerror(errno));
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  R1_CHECK(in.gcount() == 8, "optimizer state {}: file too short for a safetensors header", path);
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | len_bytes[i];
  R1_CHECK(len > 0 && len <= (uint64_t(100) << 20), "optimizer state {}: implausible header length {}", path,
           len);
  std::string header(size_t(len), '\0');
  in.read(header.data(), std::streamsize(len));
  R1_CHECK(uint64_t(in.gcount()) == len, "optimizer state {}: truncated header", path);
  nlohmann::json j = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  R1_CHECK(j.is_object(), "optimizer state {}: header is not a JSON object", path);
  std::map<std::string, std::string> meta;
  auto it = j.find("__metadata__");
  if (it != j.end() && it->is_object())
    for (auto& [k, v] : it->items())
      if (v.is_string()) meta[k] = v.get<std::string>();
  return meta;
}

}  // namespace

std::map<std::string, std::string> adamw_file_metadata(int64_t step) {
  return {{"format", "pt"}, {"step", std::to_string(step)}, {"layout", std::to_string(model::kParamLayoutVersion)}};
}

int saved_layout_version(const std::string& path) {
  const std::map<std::string, std::string> meta = read_safetensors_metadata(path);
  const auto it = meta.find("layout");
  if (it == meta.end()) return 1;  // written before the layout was recorded
  int version = 0;
  const std::string& s = it->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), version);
  R1_CHECK(ec == std::errc() && end == s.data() + s.size() && version >= 1,
           "optimizer state {}: metadata layout \"{}\" is not a positive integer", path, s);
  R1_CHECK(version <= model::kParamLayoutVersion,
           "optimizer state {}: parameter layout version {} is newer than this build's {} (written by a newer r1)",
           path, version, model::kParamLayoutVersion);
  return version;
}

void save_adamw_state(const std::string& path, const float* m, const float* v, int64_t n, int64_t step) {
  std::vector<model::NamedTensor> tensors = {{"m", {n}, m}, {"v", {n}, v}};
  model::save_safetensors(path, tensors, DType::F32, adamw_file_metadata(step));
}

void AdamW::save(const std::string& path) const {
  if (device_ == Device::CPU) return save_adamw_state(path, m_t_.f32(), v_t_.f32(), n_, step_);
  const std::vector<float> m = to_host_f32(m_t_), v = to_host_f32(v_t_);
  save_adamw_state(path, m.data(), v.data(), n_, step_);
}

void AdamW::moments_host(float* m, float* v) const {
  devmem::copy(m, Device::CPU, m_t_.data, device_, size_t(n_) * sizeof(float));
  devmem::copy(v, Device::CPU, v_t_.data, device_, size_t(n_) * sizeof(float));
}

void AdamW::load(const std::string& path) { load(path, n_, 0); }

void AdamW::load(const std::string& path, int64_t total, int64_t offset, const std::vector<model::FlatMove>& moves) {
  R1_CHECK(offset >= 0 && offset + n_ <= total, "optimizer state {}: elements [{}, {}) outside {}", path, offset,
           offset + n_, total);
  // The step count is an exact integer in the metadata (no float rounding, no 2^24 limit).
  std::map<std::string, std::string> meta = read_safetensors_metadata(path);
  auto it = meta.find("step");
  R1_CHECK(it != meta.end(), "optimizer state {}: metadata has no \"step\"", path);
  const std::string& s = it->second;
  int64_t step = -1;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), step);
  R1_CHECK(ec == std::errc() && end == s.data() + s.size() && step >= 0,
           "optimizer state {}: metadata step \"{}\" is not a non-negative integer", path, s);

  model::SafetensorsReader reader(path);
  for (const char* name : {"m", "v"}) {
    R1_CHECK(reader.contains(name), "optimizer state {}: no tensor \"{}\"", path, name);
    const model::TensorInfo& info = reader.info(name);
    R1_CHECK(info.shape.size() == 1 && info.shape[0] == total,
             "optimizer state {}: tensor \"{}\" has {} elements in {} dims, this optimizer has {} parameters",
             path, name, info.shape.empty() ? 0 : info.shape[0], info.shape.size(), total);
    R1_CHECK(info.dtype == DType::F32 && info.nbytes == size_t(total) * sizeof(float),
             "optimizer state {}: tensor \"{}\" is {} in {} bytes, expected f32", path, name,
             dtype_name(info.dtype), info.nbytes);
  }
  for (const model::FlatMove& mv : moves)
    R1_CHECK(mv.from >= 0 && mv.to >= 0 && mv.count >= 0 && mv.from + mv.count <= total && mv.to + mv.count <= total,
             "optimizer state {}: a layout move of {} elements from {} to {} falls outside its {}", path, mv.count,
             mv.from, mv.to, total);
  // Checked first, then copied straight from the mapped file: no host copy of the whole state
  // (unless it is in another layout: then this optimizer's range, gathered tensor by tensor).
  for (const char* name : {"m", "v"}) {
    const float* saved = static_cast<const float*>(reader.info(name).data);
    if (moves.empty()) {
      copy_from_host(name[0] == 'm' ? m_t_ : v_t_, saved + offset);
      continue;
    }
    const Tensor& dst = name[0] == 'm' ? m_t_ : v_t_;
    constexpr int64_t kChunk = int64_t(1) << 24;
    std::vector<float> chunk(size_t(std::min(kChunk, n_)));
    for (int64_t c0 = 0; c0 < n_; c0 += kChunk) {  // [c0, c1) of this optimizer's elements
      const int64_t c1 = std::min(c0 + kChunk, n_);
      std::fill(chunk.begin(), chunk.end(), 0.0f);  // the padding between tensors stays 0
      for (const model::FlatMove& mv : moves) {
        const int64_t a = std::max(mv.to, offset + c0), b = std::min(mv.to + mv.count, offset + c1);
        if (b > a)
          std::copy(saved + mv.from + (a - mv.to), saved + mv.from + (b - mv.to), chunk.data() + (a - offset - c0));
      }
      copy_from_host(Tensor(static_cast<float*>(dst.data) + c0, DType::F32, {c1 - c0}, dst.device), chunk.data());
    }
  }
  step_ = step;
}

std::vector<ParamSlice> param_slices(const model::Transformer& m) {
  // The trainable layout: every weight, or with LoRA the adapters.
  const std::vector<model::ParamSpec>& specs = m.has_lora() ? m.adapter_specs() : m.specs();
  std::vector<ParamSlice> slices;
  for (const auto& s : specs) slices.push_back({s.name, s.offset, s.numel(), s.shape.size() > 1});
  return slices;
}

AdamW make_adamw(const model::Transformer& m, AdamWConfig cfg, OffloadConfig offload) {
  return AdamW(param_slices(m), cfg, m.device(), offload);
}

void optimizer_step(AdamW& opt, model::Transformer& m, float lr, float grad_scale) {
  const model::Transformer::Trainable t = m.trainable_weights();
  opt.step(t.master, t.grads, lr, grad_scale, t.compute);
}

// ---------------------------------------------------------------------------------------------
// Gradient clipping (torch.nn.utils.clip_grad_norm_ semantics)

float clip_scale(double norm, double max_norm) {
  return max_norm > 0.0 && norm > max_norm ? float(max_norm / (norm + 1e-6)) : 1.0f;
}

ClipResult clip_grad_norm(const Tensor& grads, double max_norm) {
  ClipResult r;
  r.norm = grads.empty() || grads.numel() == 0 ? 0.0 : std::sqrt(ops::sum_squares(grads));
  if (!std::isfinite(r.norm)) return r;  // scale 1: the caller sees the bad norm and skips the step
  r.scale = clip_scale(r.norm, max_norm);
  return r;
}

UpdateResult clip_and_step(AdamW& opt, model::Transformer& m, double lr, double max_grad_norm,
                           bool finite_loss) {
  const ClipResult clip = clip_grad_norm(m.grads().flat, max_grad_norm);
  UpdateResult res{clip.norm, !finite_loss || !std::isfinite(clip.norm)};
  if (!res.skipped) optimizer_step(opt, m, float(lr), clip.scale);
  m.zero_grads();
  return res;
}

// ---------------------------------------------------------------------------------------------
// Learning-rate schedules, following Hugging Face transformers' get_{constant,linear,cosine}_
// schedule_with_warmup (and get_cosine_with_min_lr_schedule_with_warmup for min_lr_ratio):
//   warmup (step < warmup_steps): lr * step / max(1, warmup_steps), so step 0 has LR 0 and the
//     ramp reaches lr exactly at step == warmup_steps;
//   then progress = (step - warmup) / max(1, total - warmup), clamped to [0, 1], and
//     cosine:   lr * (min + (1 - min) * 0.5 * (1 + cos(pi * progress)))
//     linear:   lr * (min + (1 - min) * (1 - progress))
//     constant: lr
//   so from total_steps on the LR stays at lr * min_lr_ratio (cosine, linear).

namespace {
enum class Kind { Constant, Cosine, Linear };
constexpr const char* kKinds = "constant, cosine, linear";

Kind parse_kind(const std::string& k) {
  if (k == "constant") return Kind::Constant;
  if (k == "cosine") return Kind::Cosine;
  if (k == "linear") return Kind::Linear;
  fail("unknown LR schedule kind '{}' (valid: {})", k, kKinds);
}
}  // namespace

void validate(const LrSchedule& s) {
  parse_kind(s.kind);
  R1_CHECK(std::isfinite(s.lr) && s.lr >= 0.0, "LR schedule: lr {} must be finite and >= 0", s.lr);
  R1_CHECK(s.warmup_steps >= 0, "LR schedule: warmup_steps {} must be >= 0", s.warmup_steps);
  R1_CHECK(s.total_steps >= 0, "LR schedule: total_steps {} must be >= 0", s.total_steps);
  R1_CHECK(s.min_lr_ratio >= 0.0 && s.min_lr_ratio <= 1.0, "LR schedule: min_lr_ratio {} must be in [0, 1]",
           s.min_lr_ratio);
}

double lr_at(const LrSchedule& s, int64_t step) {
  validate(s);
  R1_CHECK(step >= 0, "LR schedule: step {} must be >= 0", step);
  const Kind kind = parse_kind(s.kind);
  if (step < s.warmup_steps) return s.lr * double(step) / double(std::max<int64_t>(1, s.warmup_steps));
  if (kind == Kind::Constant) return s.lr;
  double progress = double(step - s.warmup_steps) / double(std::max<int64_t>(1, s.total_steps - s.warmup_steps));
  progress = std::clamp(progress, 0.0, 1.0);
  const double lo = s.min_lr_ratio;
  double factor = kind == Kind::Cosine ? 0.5 * (1.0 + std::cos(std::numbers::pi * progress)) : 1.0 - progress;
  return s.lr * (lo + (1.0 - lo) * factor);
}

}  // namespace r1::optim
