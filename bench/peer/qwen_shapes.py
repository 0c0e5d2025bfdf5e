"""The random Qwen2.5 models the PyTorch peers measure (the shapes of bench_gpu_util.h's presets)."""
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

SHAPES = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2),
}
VOCAB = 151936


def matmul_params(s):
    """Weights that enter a matmul: per layer q, k, v, o, gate, up, down, plus the (tied) lm_head."""
    c, i, hd = s["hidden_size"], s["intermediate_size"], s["hidden_size"] // s["num_attention_heads"]
    q, kv = s["num_attention_heads"] * hd, s["num_key_value_heads"] * hd
    per_layer = c * q + 2 * c * kv + q * c + 3 * c * i
    return s["num_hidden_layers"] * per_layer + VOCAB * c


def build(shape, dtype=torch.float32, use_cache=False):
    """Qwen2ForCausalLM with SDPA attention, random weights, initialised on the GPU (a CPU init of
    1.5B parameters takes longer than the benchmarks), parameters in `dtype`."""
    cfg = Qwen2Config(vocab_size=VOCAB, max_position_embeddings=32768, rms_norm_eps=1e-6,
                      rope_theta=1e6, tie_word_embeddings=True, use_sliding_window=False,
                      use_cache=use_cache, attn_implementation="sdpa", **SHAPES[shape])
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(cfg)
    return model.to(dtype)
