#!/usr/bin/env python3
"""Do checkpoints that r1.cpp wrote load in transformers with the same outputs?

  python3 tools/parity/check_r1_checkpoints.py DIR
Each DIR/<case>/ holds an HF model directory written by r1 (`r1 init` or `r1 convert`),
inputs.jsonl, and r1_logprobs.jsonl (what `r1 logprobs` printed on the CPU). If the case also has
reference.jsonl (transformers' own log-probs of the model r1 re-saved), the outputs must be
identical to it. Prints one line per case and exits non-zero on any mismatch.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM


def read(path, key):
    with open(path) as f:
        return [json.loads(l)[key] for l in f if l.strip()]


def main(root):
    bad = 0
    for case in sorted(os.listdir(root)):
        d = os.path.join(root, case)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64, attn_implementation="eager").eval()
        rope = getattr(model.model.rotary_emb, "rope_type", "?")
        ours = read(os.path.join(d, "r1_logprobs.jsonl"), "logprobs")
        theirs = []
        with torch.no_grad():
            for ids in read(os.path.join(d, "inputs.jsonl"), "ids"):
                t = torch.tensor([ids])
                lp = torch.log_softmax(model(input_ids=t).logits[0].double(), -1)[:-1]
                theirs.append(lp.gather(1, t[0, 1:, None])[:, 0].tolist())
        d_r1 = max(abs(a - b) for x, y in zip(ours, theirs) for a, b in zip(x, y))
        line = f"{case:16s} {model.config.model_type:6s} rope={rope:8s} max|r1 - transformers| = {d_r1:.3e}"
        ok = d_r1 < 1e-4
        ref_path = os.path.join(d, "reference.jsonl")
        if os.path.exists(ref_path):
            ref = read(ref_path, "logprobs")
            d_ref = max(abs(a - b) for x, y in zip(ref, theirs) for a, b in zip(x, y))
            line += f"  max|original - re-saved| = {d_ref:.3e}"
            ok = ok and d_ref == 0.0
        print(line, "OK" if ok else "MISMATCH")
        bad += not ok
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main(sys.argv[1])
