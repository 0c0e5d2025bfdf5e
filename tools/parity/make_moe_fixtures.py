#!/usr/bin/env python3
"""Golden fixtures for the mixture-of-experts architectures, written by transformers (the oracle).

Like make_fixtures.py (same files, same format), for small random models of
  qwen3_moe          softmax top-2 of 8 experts, renormalised; layer 1 dense (mlp_only_layers)
  deepseek_v3        MLA with q_lora_rank, interleaved rope, yarn (mscale != mscale_all_dim, so both
                     the cos/sin factor and the softmax-scale correction are exercised); layer 0 dense
                     (first_k_dense_replace); sigmoid routing over 4 groups of 2, best 2 groups eligible,
                     e_score_correction_bias set to random values; a shared expert; routed_scaling_factor
  deepseek_v3_plain  MLA without q_lora_rank (q_proj), rotate_half rope, no rope scaling, one group
record in float64: per-token log-probs of fixed token sequences and the gradient of
loss = -mean(log-probs over all predicted tokens) with respect to every parameter.

The weights are drawn in float64, rounded to float32 (what is saved), and the oracle runs on exactly
those values in float64. Tensors are written in the HF checkpoint layout (per-expert
mlp.experts.{e}.{gate,up,down}_proj.weight), converting transformers v5's fused expert tensors
(experts.gate_up_proj (E, 2I, C), experts.down_proj (E, C, I)) back when the model holds them; the
gradients likewise. The routing of every token must be decided by a margin (the gap between the
K-th and the (K+1)-th choice score, and between the eligible groups and the others) larger than
float32 can blur; the script reports the smallest and stops if it is below 1e-5.

  python3 tools/parity/make_moe_fixtures.py OUT_DIR
writes OUT_DIR/<arch>/{config.json, model.safetensors, inputs.jsonl, expected.jsonl, grads.safetensors}.
Run where torch + transformers (5.x) are installed; a CPU is enough.
"""
import json
import os
import re
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

V5 = int(transformers.__version__.split(".")[0]) >= 5
COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
              num_attention_heads=4, max_position_embeddings=512, rms_norm_eps=1e-6, hidden_act="silu",
              tie_word_embeddings=False, attention_bias=False)
YARN = dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=128, beta_fast=32.0,
            beta_slow=1.0, mscale=1.0, mscale_all_dim=0.8)
DEEPSEEK = dict(num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
                v_head_dim=16, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
                moe_intermediate_size=32, first_k_dense_replace=1, n_group=4, topk_group=2,
                routed_scaling_factor=2.5, norm_topk_prob=True, rope_interleave=True)
ARCHS = {
    "qwen3_moe": dict(model_type="qwen3_moe", rope_theta=1e6, num_key_value_heads=2, head_dim=16,
                      num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True,
                      decoder_sparse_step=1, mlp_only_layers=[1]),
    "deepseek_v3": dict(DEEPSEEK, model_type="deepseek_v3", rope_theta=10000.0, rope_scaling=YARN),
    "deepseek_v3_plain": dict(DEEPSEEK, model_type="deepseek_v3", rope_theta=10000.0, q_lora_rank=None,
                              rope_interleave=False, n_group=1, topk_group=1),
}
LENGTHS = [2, 5, 17, 64, 120]
MIN_MARGIN = 1e-5


def make_config(kw):
    kw = dict(kw)
    model_type = kw.pop("model_type")
    rope = kw.pop("rope_scaling", None)
    theta = kw.pop("rope_theta")
    if V5:  # rope_parameters holds the theta and the scaling
        kw["rope_parameters"] = dict(rope or {"rope_type": "default"}, rope_theta=theta)
    else:
        kw["rope_theta"] = theta
        kw["rope_scaling"] = rope
    return AutoConfig.for_model(model_type, **kw)


def randomize(model, gen):
    """Weights far from the default init, so that every parameter visibly matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif "embed_tokens" in name or name == "lm_head.weight":
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            else:  # a linear map (or a stack of them): unit-variance outputs
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) / p.shape[-1] ** 0.5)
            p.copy_(p.to(torch.float32).to(torch.float64))  # exactly the saved f32 values
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_((0.05 * torch.randn(b.shape, generator=gen, dtype=torch.float64)).float().double())


def hf_layout(named, intermediate):
    """{name: tensor} in the checkpoint layout: fused v5 expert stacks split per expert."""
    out = {}
    for name, t in named:
        m = re.fullmatch(r"(.*\.mlp\.experts)\.(gate_up_proj|down_proj)", name)
        if m is None:
            out[name] = t
            continue
        prefix, kind = m.groups()
        for e in range(t.shape[0]):
            if kind == "gate_up_proj":
                out[f"{prefix}.{e}.gate_proj.weight"] = t[e, :intermediate]
                out[f"{prefix}.{e}.up_proj.weight"] = t[e, intermediate:]
            else:
                out[f"{prefix}.{e}.down_proj.weight"] = t[e]
    return {n: v.detach().to(torch.float32).contiguous() for n, v in out.items()}


def routing_margin(cfg, hidden, gate):
    """The smallest gap that decides a choice, for the router `gate` on hidden states (N, C)."""
    logits = hidden.reshape(-1, hidden.shape[-1]).double() @ gate.weight.double().t()
    k = cfg.num_experts_per_tok
    if cfg.model_type == "qwen3_moe":
        choice = torch.softmax(logits, dim=-1)
    else:
        choice = torch.sigmoid(logits) + gate.e_score_correction_bias.double()
        if cfg.n_group > 1:
            g = choice.view(-1, cfg.n_group, choice.shape[-1] // cfg.n_group).topk(2, dim=-1)[0].sum(-1)
            gs = g.sort(dim=-1, descending=True)[0]
            group_gap = (gs[:, cfg.topk_group - 1] - gs[:, cfg.topk_group]).min().item()
            keep = torch.zeros_like(g).scatter_(1, g.topk(cfg.topk_group, dim=-1)[1], 1.0)
            mask = keep.unsqueeze(-1).expand(-1, cfg.n_group, choice.shape[-1] // cfg.n_group).reshape(choice.shape)
            choice = choice.masked_fill(mask == 0, float("-inf"))
        else:
            group_gap = float("inf")
    s = choice.sort(dim=-1, descending=True)[0]
    gap = (s[:, k - 1] - s[:, k]).min().item() if k < s.shape[-1] else float("inf")
    if cfg.model_type != "qwen3_moe":  # transformers may mask ineligible experts to 0 rather than -inf:
        low = s[:, k - 1].min().item()  # the same choice as long as every chosen score stays above 0
        assert low > MIN_MARGIN, f"a chosen expert's choice score is {low}: 0-masking would change the choice"
    return min(gap, group_gap if cfg.model_type != "qwen3_moe" else float("inf"))


def main(out_root):
    print("torch", torch.__version__, "transformers", transformers.__version__)
    for arch, extra in ARCHS.items():
        kw = dict(COMMON)
        kw.update(extra)
        cfg = make_config(kw)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", experts_implementation="eager").to(torch.float64)
        model.eval()
        gen = torch.Generator().manual_seed(4321 + len(arch))
        randomize(model, gen)
        rope_type = getattr(model.model.rotary_emb, "rope_type", "?")
        print(arch, "rope_type", rope_type, "params", sum(p.numel() for p in model.parameters()))

        # The routers' inputs, for the margin check.
        routers, captured = [], []
        for name, mod in model.named_modules():
            if name.endswith("mlp.gate") and hasattr(mod, "weight"):
                routers.append(mod)
                mod.register_forward_hook(lambda m, inp, out, m_=None: captured.append((m, inp[0].detach())))

        seqs = [torch.randint(0, COMMON["vocab_size"], (n,), generator=gen).tolist() for n in LENGTHS]
        total = sum(len(s) - 1 for s in seqs)
        model.zero_grad()
        loss = torch.zeros((), dtype=torch.float64)
        out = os.path.join(out_root, arch)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "inputs.jsonl"), "w") as fi, open(os.path.join(out, "expected.jsonl"), "w") as fe:
            for s in seqs:
                ids = torch.tensor([s])
                logits = model(input_ids=ids).logits[0].to(torch.float64)
                logp = torch.log_softmax(logits, dim=-1)[:-1].gather(1, ids[0, 1:, None])[:, 0]
                loss = loss - logp.sum() / total
                fi.write(json.dumps({"ids": s}) + "\n")
                fe.write(json.dumps({"logprobs": [float(x) for x in logp.tolist()]}) + "\n")
        loss.backward()
        assert routers and captured, f"{arch}: no router found (module names changed?)"
        margin = min(routing_margin(cfg, h, m) for m, h in captured)
        print(arch, "smallest routing margin", margin)
        if margin < MIN_MARGIN:
            sys.exit(f"{arch}: a routing decision is within {margin:.2e}: float32 may choose differently; "
                     "change the generator seed")

        inter = cfg.moe_intermediate_size
        weights = hf_layout(list(model.named_parameters()) + [
            (n, b) for n, b in model.named_buffers() if n.endswith("e_score_correction_bias")], inter)
        grads = hf_layout([(n, p.grad if p.grad is not None else torch.zeros_like(p))
                           for n, p in model.named_parameters()], inter)
        cfg.save_pretrained(out)
        save_file(weights, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
        save_file(grads, os.path.join(out, "grads.safetensors"), metadata={"loss": repr(float(loss))})
        print(arch, "loss", float(loss), "tensors", len(weights), "files", sorted(os.listdir(out)))


if __name__ == "__main__":
    main(sys.argv[1])
