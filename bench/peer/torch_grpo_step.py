#!/usr/bin/env python3
"""PyTorch + transformers peer of bench/bench_grpo_step_gpu.cpp: one GRPO step written the TRL way.

  python3 bench/peer/torch_grpo_step.py [--shape 0.5b --prompts 64 --group 8 --prompt-len 128 --new 1024]

The same work as the r1 benchmark: a random Qwen2.5 model; addition prompts padded to
--prompt-len byte tokens (ids 0..255, id 256 ends a sequence, as r1's byte-level codec); each prompt
sampled --group times at temperature 1 for up to --new tokens with `generate` (bf16, SDPA, one
batch); math + 0.1 x format rewards; group-normalised advantages; reference log-probs (frozen bf16
copy) and old log-probs (no-grad policy forward), as TRL computes them; the clipped-ratio loss with
the k3 KL (beta 0.04), mean over each sequence's tokens then over sequences, accumulated over
micro-batches of --micro-seqs sequences; clip_grad_norm_(1.0); AdamW. The policy is held in bf16
(TRL's usual torch_dtype=bfloat16; r1 keeps fp32 master weights, which is more work).
Prints one JSON line: wall time of each phase (synchronised) and tokens generated.
"""
import argparse
import json
import random
import re
import sys
import time

import torch
import transformers

import qwen_shapes

EOS = 256


def prompt_text(rng, length):
    a, b = rng.randrange(1000, 10000), rng.randrange(1000, 10000)
    s = f"Add the numbers and put the sum in <answer></answer>: {a}+{b}="
    return (s + " " * length)[:length], str(a + b)


def reward(text, answer):
    m = re.findall(r"<answer>(.*?)</answer>", text, re.S)
    acc = 1.0 if m and m[-1].strip() == answer else 0.0
    fmt = 1.0 if re.fullmatch(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", text, re.S) else 0.0
    return acc + 0.1 * fmt


def token_logps(model, ids, attn, n_prompt):
    """log p(token t | tokens < t) of the completion tokens, as TRL's selective log-softmax."""
    logits = model(input_ids=ids, attention_mask=attn).logits[:, n_prompt - 1:-1]
    targets = ids[:, n_prompt:]
    out = []
    for row_logits, row_t in zip(logits, targets):  # one row at a time bounds the fp32 copy
        out.append(torch.gather(row_logits.float().log_softmax(-1), 1, row_t.unsqueeze(1)).squeeze(1))
    return torch.stack(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(qwen_shapes.SHAPES), default="0.5b")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new", type=int, default=1024)
    ap.add_argument("--micro-seqs", type=int, default=8)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("torch_grpo_step.py: no CUDA device")
    beta, eps_clip = 0.04, 0.2
    policy = qwen_shapes.build(args.shape, torch.bfloat16, use_cache=True)
    ref = qwen_shapes.build(args.shape, torch.bfloat16, use_cache=False).eval()
    ref.load_state_dict(policy.state_dict())
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-6, fused=True)
    rng = random.Random(7)
    prompts = [prompt_text(rng, args.prompt_len) for _ in range(args.prompts)]
    ids = torch.tensor([[ord(c) for c in p] for p, _ in prompts for _ in range(args.group)], device="cuda")
    answers = [a for _, a in prompts for _ in range(args.group)]
    kw = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, eos_token_id=EOS, pad_token_id=EOS)
    res = dict(bench="torch-grpo-step", shape=args.shape, prompts=args.prompts, group=args.group,
               prompt_len=args.prompt_len, new_tokens=args.new)
    sync = torch.cuda.synchronize
    with torch.no_grad():  # warm-up: kernels, allocator
        policy.eval()
        policy.generate(ids[:8], attention_mask=torch.ones_like(ids[:8]), max_new_tokens=8, **kw)
    sync()
    t_step = time.perf_counter()
    # Rollout.
    t = time.perf_counter()
    with torch.no_grad():
        seqs = policy.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new, **kw)
    sync()
    res["rollout_s"] = time.perf_counter() - t
    comp = seqs[:, args.prompt_len:]
    # Mask: completion tokens up to and including the first EOS.
    is_eos = comp == EOS
    first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(is_eos[:, 0], comp.shape[1], dtype=torch.long))
    cmask = (torch.arange(comp.shape[1], device="cuda")[None] <= first_eos[:, None]).float()
    res["generated_tokens"] = int(cmask.sum())
    # Rewards and advantages.
    t = time.perf_counter()
    texts = ["".join(chr(x) for x in row if x < 256) for row in comp.tolist()]
    r = torch.tensor([reward(s, a) for s, a in zip(texts, answers)], device="cuda")
    g = r.view(-1, args.group)
    adv = ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).view(-1)
    sync()
    res["reward_s"] = time.perf_counter() - t
    # Reference and old log-probs.
    attn = torch.cat([torch.ones_like(ids), cmask.long()], 1)
    t = time.perf_counter()
    ref_lp, old_lp = [], []
    with torch.no_grad():
        policy.eval()
        for i in range(0, seqs.shape[0], args.micro_seqs):
            sl = slice(i, i + args.micro_seqs)
            ref_lp.append(token_logps(ref, seqs[sl], attn[sl], args.prompt_len))
            old_lp.append(token_logps(policy, seqs[sl], attn[sl], args.prompt_len))
    ref_lp, old_lp = torch.cat(ref_lp), torch.cat(old_lp)
    sync()
    res["reference_s"] = time.perf_counter() - t
    # Update: clipped ratio + k3 KL, mean over tokens then sequences, accumulated.
    t = time.perf_counter()
    policy.train()
    policy.config.use_cache = False
    n = seqs.shape[0]
    for i in range(0, n, args.micro_seqs):
        sl = slice(i, i + args.micro_seqs)
        lp = token_logps(policy, seqs[sl], attn[sl], args.prompt_len)
        ratio = torch.exp(lp - old_lp[sl])
        a = adv[sl].unsqueeze(1)
        pg = -torch.min(ratio * a, torch.clamp(ratio, 1 - eps_clip, 1 + eps_clip) * a)
        d = ref_lp[sl] - lp
        kl = torch.exp(d) - d - 1
        m = cmask[sl]
        loss = (((pg + beta * kl) * m).sum(1) / m.sum(1).clamp(min=1)).sum() / n
        loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync()
    res["update_s"] = time.perf_counter() - t
    res["step_s"] = time.perf_counter() - t_step
    res["rollout_tok_s"] = res["generated_tokens"] / res["rollout_s"]
    res["reward_mean"] = float(r.mean())
    res.update(peak_alloc_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1), gpu=torch.cuda.get_device_name(),
               torch=torch.__version__, transformers=transformers.__version__)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
