#!/usr/bin/env python3
"""GRPO loss and gradient fixtures from a peer implementation: TRL's GRPO loss, written out in PyTorch.

One GRPO update's loss and its gradient with respect to every weight of a tiny random Qwen2 model
(transformers, float64 on float32 weights), for three settings as TRL's GRPOTrainer names them:

  grpo     loss_type "grpo": per-sequence token mean, then mean over sequences; clip 0.2 / 0.2;
           beta 0.04 (k3 KL to a reference); advantages scaled by the group's std
  dapo     loss_type "dapo": token mean over the batch; clip-higher 0.2 / 0.28; beta 0
  dr_grpo  loss_type "dr_grpo": token sum / (sequences x max_completion_length); beta 0;
           advantages not scaled by std

The formulas follow TRL's GRPOTrainer._compute_loss (TRL 0.2x) and are written here from scratch:
  logp      = log_softmax(logits / temperature)[completion token]   (per completion token)
  ratio     = exp(logp - old_logp)
  per_token = -min(ratio * A, clamp(ratio, 1 - eps_low, 1 + eps_high) * A) + beta * k3(ref_logp, logp)
  k3        = exp(ref_logp - logp) - (ref_logp - logp) - 1
  A         = (r - mean_group(r)) / (std_group(r) + eps), std unbiased; r - mean without scaling.
The one departure from TRL: eps = 1e-6 (verl's and r1's) where TRL adds 1e-4; the fixture holds the
advantages it used, and r1's test checks its own against them before comparing the loss.

Old and reference log-probs are the model's own, moved by fixed offsets (so ratios sit at 0.6 ...
1.5 and cross both clip bounds, 1.25 among them), rounded to float32 as r1 stores them.

  python3 tools/parity/grpo_peer.py OUT_DIR
writes OUT_DIR/model/{config.json, model.safetensors}, OUT_DIR/batch.json (the sequences, rewards,
old and reference log-probs), OUT_DIR/expected.json (per setting: loss, advantages, gradient norm)
and OUT_DIR/grads.safetensors (per setting, "<setting>/<parameter name>"). Needs torch and
transformers (CPU is enough); tests/test_grpo_peer.cpp reads the files from tests/fixtures/grpo_peer.
"""
import json
import math
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

CONFIG = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6, hidden_act="silu",
              rope_theta=1e6, tie_word_embeddings=True)
GROUP = 3
TEMPERATURE = 0.9
MAX_COMPLETION = 16
ADV_EPS = 1e-6
# (prompt length, completion length, reward): each sequence with its own random prompt, the rewards
# in 2 groups of 3 (the loss does not depend on whether a group's prompts are shared).
SEQUENCES = [(4, 5, 1.0), (4, 3, 0.0), (4, 9, 0.5), (6, 2, 0.2), (6, 7, 0.9), (6, 4, 0.9)]
# ratio = exp(logp - old) per completion token cycles through these (away from every clip bound).
RATIOS = [1.25, 0.75, 1.05, 0.6, 1.5, 0.9, 1.1, 0.85]
REF_SHIFTS = [0.3, -0.2, 0.05, -0.4, 0.15]
SETTINGS = {
    "grpo": dict(loss_type="grpo", eps_low=0.2, eps_high=0.2, beta=0.04, scale_rewards=True),
    "dapo": dict(loss_type="dapo", eps_low=0.2, eps_high=0.28, beta=0.0, scale_rewards=True),
    "dr_grpo": dict(loss_type="dr_grpo", eps_low=0.2, eps_high=0.2, beta=0.0, scale_rewards=False),
}


def randomize(model, gen):
    """Weights far from the default init, as make_fixtures.py does, so every parameter matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif "embed_tokens" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) / p.shape[1] ** 0.5)


def completion_logps(model, prompt, completion):
    """Per completion token: log p(token | everything before it) at TEMPERATURE, float64."""
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0].to(torch.float64) / TEMPERATURE
    logp = torch.log_softmax(logits[:-1], dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return logp[len(prompt) - 1:]


def advantages(rewards, scale):
    r = torch.tensor(rewards, dtype=torch.float64).view(-1, GROUP)
    a = r - r.mean(dim=1, keepdim=True)
    if scale:
        a = a / (r.std(dim=1, keepdim=True) + ADV_EPS)
    return a.reshape(-1)


def grpo_loss(logps, old, ref, adv, s):
    """TRL's per-token loss and its three reductions; logps etc. are lists of per-sequence tensors."""
    per_seq = []
    for lp, o, rf, a in zip(logps, old, ref, adv):
        ratio = torch.exp(lp - o)
        clipped = torch.clamp(ratio, 1 - s["eps_low"], 1 + s["eps_high"])
        per_token = -torch.min(ratio * a, clipped * a)
        if s["beta"] != 0.0:
            d = rf - lp
            per_token = per_token + s["beta"] * (torch.exp(d) - d - 1)
        per_seq.append(per_token)
    if s["loss_type"] == "grpo":
        return torch.stack([t.sum() / len(t) for t in per_seq]).mean()
    if s["loss_type"] == "dapo":
        return torch.cat(per_seq).sum() / sum(len(t) for t in per_seq)
    if s["loss_type"] == "dr_grpo":
        return torch.cat(per_seq).sum() / (len(per_seq) * MAX_COMPLETION)
    raise ValueError(s["loss_type"])


def main(out):
    print("torch", torch.__version__, "transformers", transformers.__version__)
    cfg = AutoConfig.for_model("qwen2", **CONFIG)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").to(torch.float64)
    gen = torch.Generator().manual_seed(2024)
    randomize(model, gen)
    model_dir = os.path.join(out, "model")
    os.makedirs(model_dir, exist_ok=True)
    model.to(torch.float32).save_pretrained(model_dir, safe_serialization=True)
    for extra in os.listdir(model_dir):  # generation_config.json and the like: not read by anyone
        if extra not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(model_dir, extra))
    # The peer runs on exactly the saved (f32) weights, in float64.
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64, attn_implementation="eager")
    model.eval()

    prompts, completions, rewards, old, ref = [], [], [], [], []
    k = 0
    with torch.no_grad():
        for plen, clen, reward in SEQUENCES:
            prompt = torch.randint(0, CONFIG["vocab_size"], (plen,), generator=gen).tolist()
            completion = torch.randint(0, CONFIG["vocab_size"], (clen,), generator=gen).tolist()
            lp = completion_logps(model, prompt, completion)
            o, rf = [], []
            for t in range(clen):
                o.append(float(torch.tensor(float(lp[t]) - math.log(RATIOS[k % len(RATIOS)])).float()))
                rf.append(float(torch.tensor(float(lp[t]) + REF_SHIFTS[k % len(REF_SHIFTS)]).float()))
                k += 1
            prompts.append(prompt)
            completions.append(completion)
            rewards.append(reward)
            old.append(o)
            ref.append(rf)
    batch = dict(group_size=GROUP, temperature=TEMPERATURE, max_completion_length=MAX_COMPLETION,
                 advantage_eps=ADV_EPS, prompts=prompts, completions=completions, rewards=rewards,
                 old_logps=old, ref_logps=ref)
    with open(os.path.join(out, "batch.json"), "w") as f:
        json.dump(batch, f)

    old_t = [torch.tensor(o, dtype=torch.float64) for o in old]
    ref_t = [torch.tensor(r, dtype=torch.float64) for r in ref]
    expected, grads = {}, {}
    for name, s in SETTINGS.items():
        adv = advantages(rewards, s["scale_rewards"])
        model.zero_grad()
        logps = [completion_logps(model, p, c) for p, c in zip(prompts, completions)]
        loss = grpo_loss(logps, old_t, ref_t, adv, s)
        loss.backward()
        ratios = torch.exp(torch.cat(logps).detach() - torch.cat(old_t))
        outside = int(((ratios < 1 - s["eps_low"]) | (ratios > 1 + s["eps_high"])).sum().item())
        norm_sq = 0.0
        for n, p in model.named_parameters():
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            grads[f"{name}/{n}"] = g.detach().to(torch.float32).contiguous()
            norm_sq += float((g ** 2).sum())
        expected[name] = dict(setting=s, loss=float(loss), advantages=[float(a) for a in adv],
                              grad_norm=math.sqrt(norm_sq), tokens_outside_clip_range=outside)
        print(name, "loss", float(loss), "grad_norm", math.sqrt(norm_sq), "tokens outside the clip range", outside)
    save_file(grads, os.path.join(out, "grads.safetensors"))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(dict(torch=torch.__version__, transformers=transformers.__version__, settings=expected), f, indent=1)
    print("wrote", sorted(os.listdir(out)))


if __name__ == "__main__":
    main(sys.argv[1])
