// Dispatch of the MLA and mixture-of-experts ops (interleaved RoPE, column copies, the router, the
// grouping by expert and the weighted combination; see ops_check.h): the CPU reference
// (kernels/cpu) and the CUDA kernels (kernels/cuda/moe.cu, rope.cu), f32 or bf16. The router's
// operands beside bf16 logits: the bias bf16 or f32, dlogits bf16 or f32; weights stay f32.
#include "kernels/ops.h"
#include "kernels/ops_check.h"

namespace r1::ops {

using namespace check;

namespace {

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

#ifdef R1_HAVE_CUDA
cuda::Routing cuda_routing(const cpu::Routing& c) {
  cuda::Routing g;
  g.sigmoid = c.sigmoid;
  g.top_k = int(c.top_k), g.n_group = int(c.n_group), g.topk_group = int(c.topk_group);
  g.norm_topk = c.norm_topk, g.norm_eps = c.norm_eps, g.scaling = c.scaling;
  return g;
}
#endif

// CUDA keeps a token's router scores (and the histogram of the grouping) in shared memory.
void check_cuda_experts(const char* op, int64_t E) {
#ifdef R1_HAVE_CUDA
  if (E > cuda::kMaxExperts) fail("{}: E = {} experts: CUDA takes at most {}", op, E, cuda::kMaxExperts);
#else
  (void)op, (void)E;
#endif
}

// An operand that may be f32 beside a bf16 compute dtype (the router's bias and dlogits): f32 when
// it is f32 (or absent), else the compute dtype, which expect() then checks.
DType f32_or(DType dt, const Tensor& t) { return t.empty() || t.dtype == F32 ? F32 : dt; }

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

// CUDA stages a head's row in shared memory.
void check_cuda_head_dim(const char* op, const char* xname, const Tensor& x) {
#ifdef R1_HAVE_CUDA
  if (x.shape[2] > cuda::kMaxInterleavedHeadDim)
    fail("{}: {} {}: CUDA takes head dims up to {}", op, xname, x.describe(), cuda::kMaxInterleavedHeadDim);
#else
  (void)op, (void)xname, (void)x;
#endif
}

}  // namespace

void rope_interleaved_forward(Tensor x, const Tensor& positions, const Tensor& inv_freq) {
  const Op id = Op::rope_interleaved_forward;
  const char* op = op_name(id);
  const DType dt = rope_i_check(op, "x", x, positions, inv_freq);
  const int64_t T = x.shape[0], H = x.shape[1], HD = x.shape[2];
  if (on_cuda(op, {{"x", x}, {"positions", positions}, {"inv_freq", inv_freq}})) {
    check_cuda_head_dim(op, "x", x);
    R1_CUDA_DISPATCH_DT(op, dt, cuda::rope_interleaved_forward(bp(x), ip(positions), fp(inv_freq), T, H, HD),
                        cuda::rope_interleaved_forward(fp(x), ip(positions), fp(inv_freq), T, H, HD));
  }
  count_path(id, Path::native);
  cpu::rope_interleaved_forward(fp(x), ip(positions), fp(inv_freq), T, H, HD);
}

void rope_interleaved_backward(Tensor dx, const Tensor& positions, const Tensor& inv_freq) {
  const Op id = Op::rope_interleaved_backward;
  const char* op = op_name(id);
  const DType dt = rope_i_check(op, "dx", dx, positions, inv_freq);
  const int64_t T = dx.shape[0], H = dx.shape[1], HD = dx.shape[2];
  if (on_cuda(op, {{"dx", dx}, {"positions", positions}, {"inv_freq", inv_freq}})) {
    check_cuda_head_dim(op, "dx", dx);
    R1_CUDA_DISPATCH_DT(op, dt,
                        cuda::rope_interleaved_backward(bp(dx), ip(positions), fp(inv_freq), T, H, HD),
                        cuda::rope_interleaved_backward(fp(dx), ip(positions), fp(inv_freq), T, H, HD));
  }
  count_path(id, Path::native);
  cpu::rope_interleaved_backward(fp(dx), ip(positions), fp(inv_freq), T, H, HD);
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
  if (on_cuda(op, {{"dst", dst}, {"src", src}})) {
    R1_CUDA_DISPATCH_DT(op, dt,
                        cuda::copy_columns(bp(dst), Wd, dst_col, bp(src), Ws, src_col, width, N, accumulate),
                        cuda::copy_columns(fp(dst), Wd, dst_col, fp(src), Ws, src_col, width, N, accumulate));
  }
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
  const DType bias_dt = f32_or(dt, bias);
  expect_opt(op, "bias", bias, bias_dt, {{"E", E}}, "logits", &logits);
  expect(op, "experts", experts, I32, {{"T", T}, {"K", K}}, "logits", &logits);
  expect(op, "weights", weights, F32, {{"T", T}, {"K", K}}, "logits", &logits);
  expect_opt(op, "replay", replay, I32, {{"T", T}, {"K", K}}, "logits", &logits);
  if (on_cuda(op, {{"experts", experts},
                   {"weights", weights},
                   {"logits", logits},
                   {"bias", bias},
                   {"replay", replay}})) {
    check_cuda_experts(op, E);
    // replay's data is null when it is empty (routed); the bias's likewise.
    if (dt == BF16 && bias_dt == BF16)
      R1_CUDA_DISPATCH(op, dt,
                       cuda::moe_route_forward(experts.i32(), fp(weights), bp(logits), bp(bias), ip(replay),
                                               T, E, cuda_routing(c)));
    R1_CUDA_DISPATCH_DT(op, dt,
                        cuda::moe_route_forward(experts.i32(), fp(weights), bp(logits), fp(bias), ip(replay),
                                                T, E, cuda_routing(c)),
                        cuda::moe_route_forward(experts.i32(), fp(weights), fp(logits), fp(bias), ip(replay),
                                                T, E, cuda_routing(c)));
  }
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
  const DType dlogits_dt = f32_or(dt, dlogits);
  expect(op, "dlogits", dlogits, dlogits_dt, {{"T", T}, {"E", E}}, "logits", &logits);
  expect(op, "experts", experts, I32, {{"T", T}, {"K", K}}, "logits", &logits);
  expect(op, "dweights", dweights, F32, {{"T", T}, {"K", K}}, "logits", &logits);
  if (on_cuda(op, {{"dlogits", dlogits}, {"dweights", dweights}, {"logits", logits}, {"experts", experts}})) {
    check_cuda_experts(op, E);
    if (dt == BF16 && dlogits_dt == BF16)
      R1_CUDA_DISPATCH(op, dt,
                       cuda::moe_route_backward(bp(dlogits), fp(dweights), bp(logits), ip(experts), T, E,
                                                cuda_routing(c)));
    R1_CUDA_DISPATCH_DT(
        op, dt,
        cuda::moe_route_backward(fp(dlogits), fp(dweights), bp(logits), ip(experts), T, E, cuda_routing(c)),
        cuda::moe_route_backward(fp(dlogits), fp(dweights), fp(logits), ip(experts), T, E, cuda_routing(c)));
  }
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
  if (T * K > INT32_MAX) fail("{}: {} assignments do not fit i32 rows", op, T * K);
  if (on_cuda(op, {{"order", order}, {"tokens", tokens}, {"offsets", offsets}, {"experts", experts}})) {
    check_cuda_experts(op, E);
    R1_CUDA_DISPATCH(op, F32,
                     cuda::moe_permute(order.i32(), tokens.i32(), offsets.i32(), ip(experts), T, K, E));
  }
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
  int64_t T, K;
  if (weights.empty()) {  // every weight 1: T from out, K from the rows per token
    expect(op, "out", out, dt, {{"T", kAny}, {"C", kAny}});
    expect(op, "order", order, I32, {{"R", kAny}});
    T = out.shape[0];
    const int64_t R = order.shape[0];
    if (T == 0 ? R != 0 : R % T != 0)
      fail("{}: order {} is not K rows for each of out's T = {} tokens", op, order.describe(), T);
    K = T == 0 ? 0 : R / T;
    expect(op, "y", y, dt, {{"R", R}, {"C", kAny}}, "order", &order);
  } else {
    combine_check(op, dt, y, order, weights);
    T = weights.shape[0], K = weights.shape[1];
  }
  const int64_t C = y.shape[1];
  expect(op, "out", out, dt, {{"T", T}, {"C", C}}, "y", &y);
  if (on_cuda(op, {{"out", out}, {"y", y}, {"order", order}, {"weights", weights}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::moe_combine_forward(bp(out), bp(y), ip(order), fp(weights), T, K, C),
                        cuda::moe_combine_forward(fp(out), fp(y), ip(order), fp(weights), T, K, C));
  }
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
  if (on_cuda(op, {{"dy", dy},
                   {"dweights", dweights},
                   {"dout", dout},
                   {"y", y},
                   {"order", order},
                   {"weights", weights}})) {
    R1_CUDA_DISPATCH_DT(
        op, dt,
        cuda::moe_combine_backward(bp(dy), fp(dweights), bp(dout), bp(y), ip(order), fp(weights), T, K, C),
        cuda::moe_combine_backward(fp(dy), fp(dweights), fp(dout), fp(y), ip(order), fp(weights), T, K, C));
  }
  check_range(op, "order", order, 0, T * K, "assignments");
  count_path(id, Path::native);
  cpu::moe_combine_backward(fp(dy), fp(dweights), fp(dout), fp(y), ip(order), fp(weights), T, K, C);
}

Tensor Stacked::at(int64_t e) const {
  R1_CHECK(e >= 0 && e < count, "Stacked::at({}) of {} matrices", e, count);
  Tensor t = first;
  t.data = static_cast<char*>(first.data) + size_t(e * stride) * dtype_size(first.dtype);
  return t;
}

namespace {

// A Stacked operand: `count` matrices (OUT, IN) of dtype dt, at a stride that keeps them apart.
void expect_stacked(const char* op, const char* name, const Stacked& s, DType dt, int64_t E, int64_t OUT,
                    int64_t IN) {
  expect(op, name, s.first, dt, {{"OUT", OUT}, {"IN", IN}});
  if (s.count != E) fail("{}: {} holds {} matrices, offsets name E = {} experts", op, name, s.count, E);
  if (E > 1 && s.stride < OUT * IN)
    fail("{}: {}'s stride {} is below one matrix's {} elements (OUT = {}, IN = {})", op, name, s.stride, OUT * IN,
         OUT, IN);
}

// The grouped ops' shared operands: inp (R, IN), weight E of (OUT, IN), offsets (E + 1): 0,
// non-decreasing, R at the end (read on the CPU only).
struct GroupedDims {
  DType dt;
  int64_t E, R, IN, OUT;
};
GroupedDims grouped_check(const char* op, const Tensor& inp, const Stacked& weight, const Tensor& offsets) {
  const DType dt = compute_dtype(op, "inp", inp);
  expect(op, "inp", inp, dt, {{"R", kAny}, {"IN", kAny}});
  if (weight.first.ndim != 2) fail("{}: weight {} is not a matrix (OUT, IN)", op, weight.first.describe());
  expect(op, "offsets", offsets, I32, {{"E + 1", kAny}});
  const int64_t E = offsets.shape[0] - 1, R = inp.shape[0], IN = inp.shape[1], OUT = weight.first.shape[0];
  if (E < 1) fail("{}: offsets {} names no expert", op, offsets.describe());
  expect_stacked(op, "weight", weight, dt, E, OUT, IN);
  if (offsets.device == Device::CPU) {
    const int32_t* o = ip(offsets);
    if (o[0] != 0 || o[E] != R) fail("{}: offsets run from {} to {}, not from 0 to R = {}", op, o[0], o[E], R);
    for (int64_t e = 0; e < E; ++e)
      if (o[e + 1] < o[e]) fail("{}: offsets[{}] = {} is below offsets[{}] = {}", op, e + 1, o[e + 1], e, o[e]);
  }
  return {dt, E, R, IN, OUT};
}

}  // namespace

void grouped_linear_forward(Tensor out, const Tensor& inp, const Stacked& weight, const Tensor& offsets) {
  const Op id = Op::grouped_linear_forward;
  const char* op = op_name(id);
  const auto [dt, E, R, IN, OUT] = grouped_check(op, inp, weight, offsets);
  expect(op, "out", out, dt, {{"R", R}, {"OUT", OUT}}, "inp", &inp);
  if (on_cuda(op, {{"out", out}, {"inp", inp}, {"weight", weight.first}, {"offsets", offsets}})) {
    check_cuda_experts(op, E);
    R1_CUDA_DISPATCH_DT(
        op, dt, cuda::grouped_linear_forward(bp(out), bp(inp), bp(weight.first), weight.stride, ip(offsets), E, R, IN, OUT),
        cuda::grouped_linear_forward(fp(out), fp(inp), fp(weight.first), weight.stride, ip(offsets), E, R, IN, OUT));
  }
  count_path(id, Path::native);
  cpu::grouped_linear_forward(fp(out), fp(inp), fp(weight.first), weight.stride, ip(offsets), E, IN, OUT);
}

void grouped_linear_backward(Tensor dinp, const Stacked& dweight, const Tensor& dout, const Tensor& inp,
                             const Stacked& weight, const Tensor& offsets) {
  const Op id = Op::grouped_linear_backward;
  const char* op = op_name(id);
  const auto [dt, E, R, IN, OUT] = grouped_check(op, inp, weight, offsets);
  expect(op, "dout", dout, dt, {{"R", R}, {"OUT", OUT}}, "inp", &inp);
  expect_opt(op, "dinp", dinp, dt, {{"R", R}, {"IN", IN}}, "inp", &inp);
  if (!dweight.empty()) expect_stacked(op, "dweight", dweight, F32, E, OUT, IN);
  if (on_cuda(op, {{"dinp", dinp}, {"dweight", dweight.first}, {"dout", dout}, {"inp", inp}, {"weight", weight.first},
                   {"offsets", offsets}})) {
    check_cuda_experts(op, E);
    R1_CUDA_DISPATCH_DT(op, dt,
                        cuda::grouped_linear_backward(bp(dinp), fp(dweight.first), dweight.stride, bp(dout), bp(inp),
                                                      bp(weight.first), weight.stride, ip(offsets), E, R, IN, OUT),
                        cuda::grouped_linear_backward(fp(dinp), fp(dweight.first), dweight.stride, fp(dout), fp(inp),
                                                      fp(weight.first), weight.stride, ip(offsets), E, R, IN, OUT));
  }
  count_path(id, Path::native);
  cpu::grouped_linear_backward(fp(dinp), fp(dweight.first), dweight.stride, fp(dout), fp(inp), fp(weight.first),
                               weight.stride, ip(offsets), E, IN, OUT);
}

}  // namespace r1::ops
