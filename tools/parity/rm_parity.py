#!/usr/bin/env python3
"""Do reward models that r1.cpp trains load in transformers with the same scores?

  python3 tools/parity/rm_parity.py --r1 build/r1 [--work DIR] [--cases qwen2,llama,qwen3]
                                    [--device cpu|cuda] [--model RM_DIR]

For each architecture, `r1 rm` trains a tiny reward model (byte tokenizer, a synthetic preference)
for a few steps, so the score head is no longer at its init; then `r1 rm --score` prints its
per-token scores of a few token sequences (JSONL), and transformers loads the saved directory with
AutoModelForSequenceClassification in float32 and must agree:
  - per token: score(final-norm hidden state) of the backbone (model.base_model, model.score);
  - pooled: the logits transformers returns, at the last token that is not pad_token_id (with
    pad_token_id = EOS, as r1 writes when no pad is set, a sequence ending in EOS is pooled at the
    token before it; r1's own reward is the score at the last token, EOS), against r1's score there.
--model checks an existing reward-model directory instead (random ids in its vocabulary).
Tolerance: 1e-4 absolute plus 1e-4 of the largest |score| with r1 on the CPU (f32 against f32);
3e-2 of it with --device cuda (r1 computes in bf16). Exits 1 on a mismatch, 2 if r1 fails.
"""
import argparse
import json
import os
import random
import subprocess
import sys

import torch
from transformers import AutoModelForSequenceClassification

LENGTHS = [1, 7, 33, 100]


def run(cmd, stdin_text=None):
    p = subprocess.run(cmd, input=stdin_text, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-2000:]}", file=sys.stderr)
        sys.exit(2)
    return p.stdout


def write_pairs(path, n, rng):
    """Chosen answers end in " yes", rejected ones in " no", after the same random letters."""
    with open(path, "w") as f:
        for _ in range(n):
            prompt = "q" + "".join(rng.choice("abcdef") for _ in range(rng.randint(3, 6)))
            body = "".join(rng.choice("abcdef") for _ in range(rng.randint(2, 5)))
            f.write(json.dumps({"prompt": prompt, "chosen": body + " yes", "rejected": body + " no"}) + "\n")


def train_tiny(r1, work, arch, rng):
    pairs = os.path.join(work, f"{arch}_pairs.jsonl")
    write_pairs(pairs, 64, rng)
    run([r1, "rm", "model.tokenizer=byte", f"model.init_arch={arch}", "data.template=none", f"data.path={pairs}",
         "train.steps=30", "train.lr=2e-3", "train.lr_schedule=constant", f"run.dir={work}", f"run.name={arch}"])
    return os.path.join(work, arch, "model")


def check(r1, model_dir, device, rng, name):
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    cfg = model.config
    vocab, pad = cfg.vocab_size, cfg.pad_token_id
    seqs = [[rng.randrange(vocab) for _ in range(n)] for n in LENGTHS]
    if pad is not None:  # sequences that end the way r1 scores them: response + EOS (= pad here)
        seqs += [s + [pad] for s in seqs[1:]]
    inputs = "".join(json.dumps({"ids": s}) + "\n" for s in seqs)
    ours = [json.loads(l) for l in run([r1, "rm", "--score", model_dir, "--device", device], inputs).splitlines()
            if l.strip()]
    d_tok = d_pool = scale = 0.0
    with torch.no_grad():
        for s, o in zip(seqs, ours):
            t = torch.tensor([s])
            hidden = model.base_model(input_ids=t).last_hidden_state
            theirs = model.score(hidden)[0, :, 0].double()
            mine = torch.tensor(o["scores"], dtype=torch.float64)
            scale = max(scale, theirs.abs().max().item())
            d_tok = max(d_tok, (mine - theirs).abs().max().item())
            pooled = model(input_ids=t).logits[0, 0].item()
            at = max([i for i, x in enumerate(s) if x != pad], default=0) if pad is not None else len(s) - 1
            d_pool = max(d_pool, abs(o["scores"][at] - pooled))
    tol = (1e-4 + 1e-4 * scale) if device == "cpu" else 3e-2 * scale + 1e-3
    ok = d_tok <= tol and d_pool <= tol
    print(f"{name:8s} {cfg.architectures[0]:32s} pad={pad} max|score|={scale:.3f} "
          f"max|r1 - transformers| per token {d_tok:.3e} pooled {d_pool:.3e} (tol {tol:.1e}) "
          f"{'OK' if ok else 'MISMATCH'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--r1", required=True, help="the r1 binary")
    ap.add_argument("--work", default=".parity/rm", help="where the tiny reward models are trained")
    ap.add_argument("--cases", default="qwen2,llama,qwen3")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where r1 scores")
    ap.add_argument("--model", help="check this reward-model directory instead of training tiny ones")
    a = ap.parse_args()
    rng = random.Random(1)
    os.makedirs(a.work, exist_ok=True)
    if a.model:
        ok = check(a.r1, a.model, a.device, rng, "model")
    else:
        ok = all([check(a.r1, train_tiny(a.r1, a.work, arch, rng), a.device, rng, arch)
                  for arch in a.cases.split(",")])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
