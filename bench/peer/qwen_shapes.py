"""The random models the PyTorch peers measure (the shapes of r1's presets, src/model/presets.cpp):
Qwen2.5 0.5B, 1.5B and 7B, Llama-3.1-8B, and the mixture-of-experts shapes Qwen3-30B-A3B and
Moonlight-16B-A3B (deepseek_v3: multi-head latent attention)."""
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

_QWEN = dict(family="qwen2", vocab_size=151936, tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6,
             max_position_embeddings=32768)
SHAPES = {
    "0.5b": dict(_QWEN, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2),
    "1.5b": dict(_QWEN, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2),
    "7b": dict(_QWEN, vocab_size=152064, tie_word_embeddings=False, max_position_embeddings=131072,
               hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4),
    "llama-3.1-8b": dict(family="llama", vocab_size=128256, tie_word_embeddings=False, rope_theta=500000.0,
                         rms_norm_eps=1e-5, max_position_embeddings=131072, hidden_size=4096,
                         intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8,
                         rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                           high_freq_factor=4.0, original_max_position_embeddings=8192)),
    # Published config.json values (as r1's presets "qwen3-30b-a3b" and "moonlight-16b-a3b").
    "qwen3-30b-a3b": dict(family="qwen3_moe", vocab_size=151936, tie_word_embeddings=False, rope_theta=1e6,
                          rms_norm_eps=1e-6, max_position_embeddings=40960, hidden_size=2048,
                          intermediate_size=6144, num_hidden_layers=48, num_attention_heads=32,
                          num_key_value_heads=4, head_dim=128, num_experts=128, num_experts_per_tok=8,
                          moe_intermediate_size=768, norm_topk_prob=True, decoder_sparse_step=1,
                          mlp_only_layers=[]),
    "moonlight-16b-a3b": dict(family="deepseek_v3", vocab_size=163840, tie_word_embeddings=False,
                              rope_theta=50000.0, rms_norm_eps=1e-5, max_position_embeddings=8192,
                              hidden_size=2048, intermediate_size=11264, num_hidden_layers=27,
                              num_attention_heads=16, num_key_value_heads=16, q_lora_rank=None,
                              kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                              n_routed_experts=64, n_shared_experts=2, num_experts_per_tok=6,
                              moe_intermediate_size=1408, first_k_dense_replace=1, n_group=1, topk_group=1,
                              routed_scaling_factor=2.446, norm_topk_prob=True),
}
VOCAB = 151936  # the Qwen2.5 vocabulary (0.5B, 1.5B): the train-step peer's ids


def _layer_params(s, layer, experts):
    """Matmul weights of one layer when `experts` of its routed experts run (bench_gpu_util.h's
    layer_matmul_params)."""
    c = s["hidden_size"]
    if s["family"] == "deepseek_v3":
        nh, kvr, qr = s["num_attention_heads"], s["kv_lora_rank"], s["q_lora_rank"] or 0
        qk = s["qk_nope_head_dim"] + s["qk_rope_head_dim"]
        q = c * qr + qr * nh * qk if qr else c * nh * qk
        attn = (q + c * (kvr + s["qk_rope_head_dim"]) + kvr * nh * (s["qk_nope_head_dim"] + s["v_head_dim"])
                + nh * s["v_head_dim"] * c)
        moe = layer >= s["first_k_dense_replace"]
        n_exp, shared = s["n_routed_experts"], s["n_shared_experts"]
    else:
        hd = s.get("head_dim", s["hidden_size"] // s["num_attention_heads"])
        q, kv = s["num_attention_heads"] * hd, s["num_key_value_heads"] * hd
        attn = c * q + 2 * c * kv + q * c
        moe = s["family"] == "qwen3_moe"
        n_exp, shared = s.get("num_experts", 0), 0
    if not moe:
        return attn + 3 * c * s["intermediate_size"]
    return attn + c * n_exp + 3 * c * s["moe_intermediate_size"] * (shared + experts)


def matmul_params(s):
    """Weights that enter a matmul per token: per layer the attention projections and the MLP (a
    mixture-of-experts layer's router, shared experts and num_experts_per_tok routed experts), plus the
    lm_head (read once per step whether tied to the embedding or not)."""
    return (sum(_layer_params(s, l, s.get("num_experts_per_tok", 0)) for l in range(s["num_hidden_layers"]))
            + s["vocab_size"] * s["hidden_size"])


def build(shape, dtype=torch.float32, use_cache=False, layers=0):
    """The shape's *ForCausalLM with SDPA attention, random weights, initialised on the GPU (a CPU
    init of 1.5B parameters takes longer than the benchmarks), parameters in `dtype`."""
    s = {k: v for k, v in SHAPES[shape].items() if k != "family"}
    if layers > 0:
        s["num_hidden_layers"] = layers
    family = SHAPES[shape]["family"]
    if family == "llama":
        cfg, cls = LlamaConfig(use_cache=use_cache, attn_implementation="sdpa", **s), LlamaForCausalLM
    elif family == "qwen3_moe":
        cfg = transformers.Qwen3MoeConfig(use_cache=use_cache, attn_implementation="sdpa", **s)
        cls = transformers.Qwen3MoeForCausalLM
    elif family == "deepseek_v3":
        cfg = transformers.DeepseekV3Config(use_cache=use_cache, attn_implementation="sdpa", **s)
        cls = transformers.DeepseekV3ForCausalLM
    else:
        cfg = Qwen2Config(use_sliding_window=False, use_cache=use_cache, attn_implementation="sdpa", **s)
        cls = Qwen2ForCausalLM
    torch.manual_seed(0)
    # Drawn in `dtype` directly: an fp32 draw of Qwen3-30B-A3B (122 GB) does not fit an 80 GB GPU
    # before its bf16 cast.
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda"):
            model = cls(cfg)
    finally:
        torch.set_default_dtype(default)
    return model.to(dtype)
