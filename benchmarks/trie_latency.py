"""Allowed-next-tokens latency by prefix depth: kgqa's CSR trie beside a baseline that enumerates
every key under the prefix (GENRE's MarisaTrie.get), same keys, same run.

    python benchmarks/trie_latency.py --index DIR --checkpoint CKPT [--queries 2000] [--seed 0]

DIR is an index `kgqa index` wrote with CKPT's tokenizer (the benchmark rebuilds the keys from
the surfaces with it); the trie timed is its first segment's. Two kgqa figures per depth: `get(prefix)`, GENRE's query, which walks
the prefix from the root; and `children(node)`, what the decoder pays per step, as it keeps each
beam's node from the step before.
"""
from __future__ import annotations

import argparse
import os
import time

import marisa_trie
import numpy as np

import harness  # noqa: F401 (first: it puts kgqa on sys.path)

from kgqa.kb.index import KBIndex  # noqa: E402
from kgqa.model.tokenizer import load_tokenizer  # noqa: E402
from kgqa.kb.trie import ROOT  # noqa: E402

DEPTHS = (0, 1, 2, 4, 8, "deep")
CODEPOINT = 0x10000  # token t is the character chr(CODEPOINT + t) in the baseline's string keys


def timed(call, items, budget_s: float) -> tuple[np.ndarray, int]:
    """Per-call latencies in µs, stopping early once `budget_s` is spent; and the last result's size."""
    out, size, spent = [], 0, 0.0
    for item in items:
        start = time.perf_counter()
        result = call(item)
        took = time.perf_counter() - start
        out.append(took * 1e6)
        size, spent = len(result), spent + took
        if spent > budget_s:
            break
    return np.array(out), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--baseline-budget", type=float, default=30.0, help="seconds per depth for the baseline")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    segment = KBIndex(args.index).segments[0]
    tokenizer = load_tokenizer(os.path.join(args.checkpoint, "tokenizer"))
    trie = segment.surface_trie
    n = len(segment.surfaces)
    started = time.time()
    keys = [tokenizer.encode(segment.surface(sid)) + [tokenizer.sep_id] for sid in range(n)]
    baseline = marisa_trie.Trie("".join(chr(CODEPOINT + t) for t in key) for key in keys)
    print(f"{n} keys ({trie.tokens.shape[0]} edges); baseline marisa trie built in {time.time() - started:.0f} s\n")

    def genre_get(prefix: list[int]) -> set[int]:
        text = "".join(chr(CODEPOINT + t) for t in prefix)
        return {ord(key[len(prefix)]) - CODEPOINT for key in baseline.keys(text)}

    def node_of(prefix: list[int]) -> int:
        node = ROOT
        for token in prefix:
            node = trie.step(node, token)
        return node

    def get(prefix: list[int]) -> np.ndarray:
        """GENRE's query from ours: step down the prefix, then the node's children."""
        return trie.children(node_of(prefix))

    rng = np.random.default_rng(args.seed)
    print("| depth | queries (kgqa / baseline) | mean allowed | get p50 µs | get p99 µs | children p50 µs "
          "| children p99 µs | baseline p50 µs | baseline p99 µs | speed-up p50 (get) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for depth in DEPTHS:
        pool = [k for k in (keys[i] for i in rng.choice(n, min(n, 20 * args.queries), replace=False))
                if len(k) - 1 > (0 if depth == "deep" else depth)]
        prefixes = [k[: len(k) - 1 if depth == "deep" else depth] for k in pool[: args.queries]]
        if not prefixes:
            continue
        for prefix in prefixes[:50]:  # the answers agree
            assert sorted(get(prefix).tolist()) == sorted(genre_get(prefix)), prefix
        ours, _ = timed(get, prefixes, budget_s=60.0)
        nodes = [node_of(p) for p in prefixes]
        step, _ = timed(trie.children, nodes, budget_s=60.0)
        theirs, _ = timed(genre_get, prefixes, budget_s=args.baseline_budget)
        allowed = np.mean([len(get(p)) for p in prefixes[:200]])
        p = {name: np.percentile(values, [50, 99]) for name, values in
             (("get", ours), ("children", step), ("baseline", theirs))}
        print(f"| {depth} | {len(ours)} / {len(theirs)} | {allowed:.1f} | {p['get'][0]:.1f} | {p['get'][1]:.1f} | "
              f"{p['children'][0]:.1f} | {p['children'][1]:.1f} | {p['baseline'][0]:.0f} | {p['baseline'][1]:.0f} | "
              f"{p['baseline'][0] / p['get'][0]:.0f}× |")


if __name__ == "__main__":
    main()
