"""Questions generated from KB triples, so the model practises predicates the QA data never has.

KgCLUE's splits are relation-disjoint: dev asks about predicates train never shows. Questions
written around (S, P) from the KB given to training teach the model to copy the predicate the
question names from whatever the entity offers. Only the training KB is read; never dev or test.
"""
from __future__ import annotations

import random

from kgqa.data import Pairs, Target
from kgqa.kb.index import KBIndex

TEMPLATES = (
    "{s}的{p}是什么？", "{s}的{p}是什么", "请问{s}的{p}是什么？", "你知道{s}的{p}吗？",
    "我想知道{s}的{p}。", "{s}的{p}是？", "{s}{p}是什么？", "谁知道{s}的{p}是什么啊？",
    "{s}的{p}是哪个？", "我很好奇{s}的{p}是什么啊？", "{s}有什么{p}？", "{p}，{s}的是什么？",
)


def kb_questions(index: KBIndex, count: int, seed: int) -> Pairs:
    """`count` (question, target) pairs from uniformly drawn KB keys, seeded."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        key = rng.randrange(index.key_count)
        while not index.is_live(key):
            key = rng.randrange(index.key_count)
        fact = index.fact(key)
        question = rng.choice(TEMPLATES).format(s=fact.surface, p=fact.predicate)
        pairs.append((question, Target(fact.surface, fact.predicate, fact.disambiguation, fact.objects[0])))
    return pairs
