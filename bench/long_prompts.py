#!/usr/bin/env python3
"""Writes GSM8K rows whose question is exactly LEN bytes, for GRPO runs at a fixed prompt length
under the byte-level codec (one token per byte): the question stays last, and the text before it is
other questions of the file, given as background, cut to fill the length.

usage: python3 bench/long_prompts.py data/gsm8k_train.jsonl OUT.jsonl LEN N
"""
import json
import sys


def main():
    src, out, length, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rows = [json.loads(line) for line in open(src, encoding="utf-8")]
    rows = [r for r in rows if r["question"].isascii()]
    filler = " ".join(r["question"] for r in rows[count:count + 200])
    written = 0
    with open(out, "w", encoding="utf-8") as f:
        for r in rows[:count]:
            tail = "\nQuestion: " + r["question"]
            head = "Background: " + filler
            need = length - len(tail)
            if need < len("Background: "):
                continue
            question = head[:need] + tail
            assert len(question.encode()) == length
            f.write(json.dumps({"question": question, "answer": r["answer"]}) + "\n")
            written += 1
    if written < count:
        sys.exit(f"long_prompts: only {written} of {count} questions fit in {length} bytes")


if __name__ == "__main__":
    main()
