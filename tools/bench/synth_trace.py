#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes a small synthetic request trace in the Mooncake format that
kvstash-bench replay reads (one JSON object per line: input_length and
hash_ids, chained 512-token block ids), for CI and for machines without the
real traces. Conversations share a few system prompts; each turn resends
the conversation so far plus a new message, so prefixes repeat the way
chat traffic repeats them.

  synth_trace.py [--requests N] [--seed S] > trace.jsonl
"""
import argparse
import json
import random


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    next_id = 0

    def new_ids(n):
        nonlocal next_id
        ids = list(range(next_id, next_id + n))
        next_id += n
        return ids

    prompts = [new_ids(rng.randint(2, 8)) for _ in range(8)]
    convs = []
    for t in range(a.requests):
        if not convs or rng.random() < 0.3:
            convs.append(list(rng.choice(prompts)))
            if len(convs) > 200:
                convs.pop(rng.randrange(len(convs)))
        conv = rng.choice(convs)
        conv.extend(new_ids(rng.randint(1, 4)))
        tokens = 512 * (len(conv) - 1) + rng.randint(1, 512)
        print(json.dumps({"timestamp": t, "input_length": tokens,
                          "output_length": 256, "hash_ids": conv}))


if __name__ == "__main__":
    main()
