"""The random models the PyTorch peers measure (the shapes of r1's presets, src/model/presets.cpp):
Qwen2.5 0.5B, 1.5B and 7B, and Llama-3.1-8B."""
import torch
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
}
VOCAB = 151936  # the Qwen2.5 vocabulary (0.5B, 1.5B): the train-step peer's ids


def matmul_params(s):
    """Weights that enter a matmul: per layer q, k, v, o, gate, up, down, plus the lm_head (read once
    per step whether tied to the embedding or not)."""
    c, i, hd = s["hidden_size"], s["intermediate_size"], s["hidden_size"] // s["num_attention_heads"]
    q, kv = s["num_attention_heads"] * hd, s["num_key_value_heads"] * hd
    per_layer = c * q + 2 * c * kv + q * c + 3 * c * i
    return s["num_hidden_layers"] * per_layer + s["vocab_size"] * c


def build(shape, dtype=torch.float32, use_cache=False):
    """The shape's *ForCausalLM with SDPA attention, random weights, initialised on the GPU (a CPU
    init of 1.5B parameters takes longer than the benchmarks), parameters in `dtype`."""
    s = {k: v for k, v in SHAPES[shape].items() if k != "family"}
    if SHAPES[shape]["family"] == "llama":
        cfg, cls = LlamaConfig(use_cache=use_cache, attn_implementation="sdpa", **s), LlamaForCausalLM
    else:
        cfg = Qwen2Config(use_sliding_window=False, use_cache=use_cache, attn_implementation="sdpa", **s)
        cls = Qwen2ForCausalLM
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = cls(cfg)
    return model.to(dtype)
