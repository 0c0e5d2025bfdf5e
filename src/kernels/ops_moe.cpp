// Dispatch of the MLA and mixture-of-experts ops (interleaved RoPE, column copies, the router, the
// grouping by expert and the weighted combination; see ops_check.h). They have a CPU reference
// only: on CUDA tensors they fail naming the op (supports.h).
#include "kernels/ops.h"
#include "kernels/ops_check.h"

namespace r1::ops {

using namespace check;

namespace {

// CUDA tensors: fails with supports()'s reason (no kernel yet), naming the op and the operand.
void cpu_only(Op id, DType dt, const char* name, const Tensor& t) {
  require_supported(id, {}, dt, Device::CUDA, name, t);
  fail("{}: no CUDA path", op_name(id));  // not reached: supports() says unsupported
}

cpu::Routing routing(const char* op, const MoeRouting& r, int64_t E) {
  if (r.top_k < 1 || r.top_k > E) fail("{}: top_k = {} is outside [1, E = {}]", op, r.top_k, E);
  if (r.n_group < 1 || E % r.n_group != 0) fail("{}: E = {} is not a multiple of n_group = {}", op, E, r.n_group);
  if (r.topk_group < 1 || r.topk_group > r.n_group)
    fail("{}: topk_group = {} is outside [1, n_group = {}]", op, r.topk_group, r.n_group);
  if (r.n_group > 1 && r.top_k > r.topk_group * (E / r.n_group))
    fail("{}: top_k = {} exceeds the {} experts of the topk_group groups", op, r.top_k, r.topk_group * (E / r.n_group));
  cpu::Routing c;
  c.sigmoid = r.scoring == MoeRouting::Scoring::sigmoid;
  c.top_k = r.top_k, c.n_group = r.n_group, c.topk_group = r.topk_group;
  c.norm_topk = r.norm_topk, c.norm_eps = r.norm_eps, c.scaling = r.scaling;
  return c;
}

// Each row of replay (T, K) is K distinct experts in [0, E), or K times -1 (routed).
void check_replay(const char* op, const Tensor& replay, int64_t E) {
  const int64_t T = replay.shape[0], K = replay.shape[1];
  const int32_t* p = ip(replay);
  for (int64_t t = 0; t < T; ++t) {
    const int32_t* row = p + t * K;
    const bool routed = row[0] == -1;
    for (int64_t k = 0; k < K; ++k) {
      if (routed ? row[k] != -1 : row[k] < 0 || row[k] >= E)
        fail("{}: replay[{}, {}] = {}: a row is K experts in [0, E = {}) or K times -1 (routed)", op, t, k,
             row[k], E);
      for (int64_t j = 0; j < k && !routed; ++j)
        if (row[j] == row[k]) fail("{}: replay row {} names expert {} twice", op, t, row[k]);
    }
  }
}

DType rope_i_check(const char* op, const char* xname, const Tensor& x, const Tensor& positions, const Tensor& inv_freq) {
  const DType dt = compute_dtype(op, xname, x);
  expect(op, xname, x, dt, {{"T", kAny}, {"H", kAny}, {"HD", kAny}});
  const int64_t T = x.shape[0], HD = x.shape[2];
  if (HD % 2 != 0) fail("{}: {} {} has odd head dim HD = {}", op, xname, x.describe(), HD);
  expect(op, "positions", positions, I32, {{"T", T}}, xname, &x);
  expect(op, "inv_freq", inv_freq, F32, {{"HD/2", HD / 2}}, xname, &x);
  return dt;
}

}  // namespace

void rope_interleaved_forward(Tensor x, const Tensor& positions, const Tensor& inv_freq) {
  const Op id = Op::rope_interleaved_forward;
  const char* op = op_name(id);
  const DType dt = rope_i_check(op, "x", x, positions, inv_freq);
  if (on_cuda(op, {{"x", x}, {"positions", positions}, {"inv_freq", inv_freq}})) cpu_only(id, dt, "x", x);
  count_path(id, Path::native);
  cpu::rope_interleaved_forward(fp(x), ip(positions), fp(inv_freq), x.shape[0], x.shape[1], x.shape[2]);
}

void rope_interleaved_backward(Tensor dx, const Tensor& positions, const Tensor& inv_freq) {
  const Op id = Op::rope_interleaved_backward;
  const char* op = op_name(id);
  const DType dt = rope_i_check(op, "dx", dx, positions, inv_freq);
  if (on_cuda(op, {{"dx", dx}, {"positions", positions}, {"inv_freq", inv_freq}})) cpu_only(id, dt, "dx", dx);
  count_path(id, Path::native);
  cpu::rope_interleaved_backward(fp(dx), ip(positions), fp(inv_freq), dx.shape[0], dx.shape[1], dx.shape[2]);
}

void copy_columns(Tensor dst, int64_t dst_col, const Tensor& src, int64_t src_col, int64_t width, bool accumulate) {
  const Op id = Op::copy_columns;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "src", src);
  expect(op, "src", src, dt, {{"N", kAny}, {"Ws", kAny}});
  const int64_t N = src.shape[0], Ws = src.shape[1];
  expect(op, "dst", dst, dt, {{"N", N}, {"Wd", kAny}}, "src", &src);
  const int64_t Wd = dst.shape[1];
  if (width < 0 || src_col < 0 || dst_col < 0 || src_col + width > Ws || dst_col + width > Wd)
    fail("{}: columns [{}, {}) of src {} to [{}, {}) of dst {} are out of range", op, src_col, src_col + width,
         src.describe(), dst_col, dst_col + width, dst.describe());
  if (on_cuda(op, {{"dst", dst}, {"src", src}})) cpu_only(id, dt, "src", src);
  count_path(id, Path::native);
  cpu::copy_columns(fp(dst), Wd, dst_col, fp(src), Ws, src_col, width, N, accumulate);
}

void moe_route_forward(Tensor experts, Tensor weights, const Tensor& logits, const Tensor& bias,
                       const MoeRouting& r, const Tensor& replay) {
  const Op id = Op::moe_route_forward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "logits", logits);
  expect(op, "logits", logits, dt, {{"T", kAny}, {"E", kAny}});
  const int64_t T = logits.shape[0], E = logits.shape[1], K = r.top_k;
  const cpu::Routing c = routing(op, r, E);
  expect_opt(op, "bias", bias, dt, {{"E", E}}, "logits", &logits);
  expect(op, "experts", experts, I32, {{"T", T}, {"K", K}}, "logits", &logits);
  expect(op, "weights", weights, F32, {{"T", T}, {"K", K}}, "logits", &logits);
  expect_opt(op, "replay", replay, I32, {{"T", T}, {"K", K}}, "logits", &logits);
  if (on_cuda(op, {{"experts", experts},
                   {"weights", weights},
                   {"logits", logits},
                   {"bias", bias},
                   {"replay", replay}}))
    cpu_only(id, dt, "logits", logits);
  if (!replay.empty()) check_replay(op, replay, E);
  count_path(id, Path::native);
  cpu::moe_route_forward(static_cast<int32_t*>(experts.data), fp(weights), fp(logits), fp(bias),
                         replay.empty() ? nullptr : ip(replay), T, E, c);
}

void moe_route_backward(Tensor dlogits, const Tensor& dweights, const Tensor& logits, const Tensor& experts,
                        const MoeRouting& r) {
  const Op id = Op::moe_route_backward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "logits", logits);
  expect(op, "logits", logits, dt, {{"T", kAny}, {"E", kAny}});
  const int64_t T = logits.shape[0], E = logits.shape[1], K = r.top_k;
  const cpu::Routing c = routing(op, r, E);
  expect(op, "dlogits", dlogits, F32, {{"T", T}, {"E", E}}, "logits", &logits);
  expect(op, "experts", experts, I32, {{"T", T}, {"K", K}}, "logits", &logits);
  expect(op, "dweights", dweights, F32, {{"T", T}, {"K", K}}, "logits", &logits);
  if (on_cuda(op, {{"dlogits", dlogits}, {"dweights", dweights}, {"logits", logits}, {"experts", experts}}))
    cpu_only(id, dt, "logits", logits);
  check_range(op, "experts", experts, 0, E, "experts");
  count_path(id, Path::native);
  cpu::moe_route_backward(fp(dlogits), fp(dweights), fp(logits), ip(experts), T, E, c);
}

void moe_permute(Tensor order, Tensor tokens, Tensor offsets, const Tensor& experts) {
  const Op id = Op::moe_permute;
  const char* op = op_name(id);
  expect(op, "experts", experts, I32, {{"T", kAny}, {"K", kAny}});
  const int64_t T = experts.shape[0], K = experts.shape[1];
  expect(op, "order", order, I32, {{"R", T * K}}, "experts", &experts);
  expect(op, "tokens", tokens, I32, {{"R", T * K}}, "experts", &experts);
  expect(op, "offsets", offsets, I32, {{"E+1", kAny}});
  const int64_t E = offsets.shape[0] - 1;
  if (on_cuda(op, {{"order", order}, {"tokens", tokens}, {"offsets", offsets}, {"experts", experts}}))
    cpu_only(id, F32, "experts", experts);
  check_range(op, "experts", experts, 0, E, "experts");
  count_path(id, Path::native);
  cpu::moe_permute(static_cast<int32_t*>(order.data), static_cast<int32_t*>(tokens.data),
                   static_cast<int32_t*>(offsets.data), ip(experts), T, K, E);
}

namespace {
// The shapes moe_combine_* share: y (R, C), order (R), weights (T, K) with R = T * K.
void combine_check(const char* op, DType dt, const Tensor& y, const Tensor& order, const Tensor& weights) {
  expect(op, "weights", weights, F32, {{"T", kAny}, {"K", kAny}});
  const int64_t R = weights.shape[0] * weights.shape[1];
  expect(op, "y", y, dt, {{"R", R}, {"C", kAny}}, "weights", &weights);
  expect(op, "order", order, I32, {{"R", R}}, "weights", &weights);
}
}  // namespace

void moe_combine_forward(Tensor out, const Tensor& y, const Tensor& order, const Tensor& weights) {
  const Op id = Op::moe_combine_forward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "y", y);
  combine_check(op, dt, y, order, weights);
  const int64_t T = weights.shape[0], K = weights.shape[1], C = y.shape[1];
  expect(op, "out", out, dt, {{"T", T}, {"C", C}}, "y", &y);
  if (on_cuda(op, {{"out", out}, {"y", y}, {"order", order}, {"weights", weights}})) cpu_only(id, dt, "y", y);
  check_range(op, "order", order, 0, T * K, "assignments");
  count_path(id, Path::native);
  cpu::moe_combine_forward(fp(out), fp(y), ip(order), fp(weights), T, K, C);
}

void moe_combine_backward(Tensor dy, Tensor dweights, const Tensor& dout, const Tensor& y, const Tensor& order,
                          const Tensor& weights) {
  const Op id = Op::moe_combine_backward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "y", y);
  combine_check(op, dt, y, order, weights);
  const int64_t T = weights.shape[0], K = weights.shape[1], C = y.shape[1];
  expect(op, "dout", dout, dt, {{"T", T}, {"C", C}}, "y", &y);
  expect_opt(op, "dy", dy, dt, {{"R", T * K}, {"C", C}}, "y", &y);
  expect_opt(op, "dweights", dweights, F32, {{"T", T}, {"K", K}}, "weights", &weights);
  if (on_cuda(op, {{"dy", dy}, {"dweights", dweights}, {"dout", dout}, {"y", y}, {"order", order},
                   {"weights", weights}}))
    cpu_only(id, dt, "y", y);
  check_range(op, "order", order, 0, T * K, "assignments");
  count_path(id, Path::native);
  cpu::moe_combine_backward(fp(dy), fp(dweights), fp(dout), fp(y), ip(order), fp(weights), T, K, C);
}

}  // namespace r1::ops
