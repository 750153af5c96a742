"""What an index answers, as plain values with its ids left out: two indexes of the same KB
(one updated in place, one rebuilt from the changed KB) must give equal `contents`, whatever ids
each gave its surfaces, entities and keys.

Not on the answer path: the oracle `tests/test_update.py` and `benchmarks/kb_update.py` compare an
updated index with a rebuilt one by, kept in the package beside the index it reads (both import it)."""
from __future__ import annotations

from typing import Callable, Iterable

from kgqa.kb.index import KBIndex
from kgqa.kb.trie import ROOT, Trie, value_of


def trie_keys(trie: Trie, name: Callable[[int], object] = lambda value: value, node: int = ROOT,
              prefix: tuple[int, ...] = ()) -> dict:
    """Every key of a trie -> `name(value)`, by both walks the decoder makes: a node's `edges`, and
    `step` along each (asserted to agree)."""
    keys = {}
    tokens, targets = trie.edges(node)
    assert tokens.tolist() == trie.children(node).tolist()
    for token, target in zip(tokens.tolist(), targets.tolist()):
        assert trie.step(node, token) == target
        value = value_of(target)
        if value is None:
            keys.update(trie_keys(trie, name, target, prefix + (token,)))
        else:
            keys[prefix + (token,)] = name(value)
    return keys


def contents(index: KBIndex, surfaces: Iterable[str] | None = None, predicates: Iterable[str] | None = None,
             questions: Iterable[str] = (), whole_trie: bool = True) -> dict:
    """For each surface (every one the index has, or `surfaces`): its keys in the order `keys`
    gives them with their objects, each key's prominence count and subject's keys, the subject
    trie's keys, the surface the surface trie reaches by its tokens; for each predicate (every one, or `predicates`) its sampled objects; each
    question's mentions; and where `whole_trie`, every key of the unrestricted surface trie."""
    if surfaces is None:
        surfaces = sorted(index.names.surface(value) for value in trie_keys(index.surface_trie).values())
    values: dict = {"surfaces": {}, "predicates": {}, "mentions": {}}
    for surface in surfaces:
        sid = index.names.surface_id(surface)
        if sid is None:
            values["surfaces"][surface] = _reached(index, surface)  # not in the KB: None
            continue
        keys = []
        for key, predicate, disambiguation in index.keys(sid):
            assert index.surface_of(key) == sid and index.is_live(key)
            subject = [index.fact(k)[1:3] for k in index.subject_keys(key)]
            keys.append((predicate, disambiguation, index.fact(key).objects, index.prominence(key)[1], subject))
        assert [(p, m, objects) for _, p, m, objects in index.subject_triples(sid)] == [key[:3] for key in keys]
        values["surfaces"][surface] = (keys, trie_keys(index.tail_trie(sid), lambda k: index.fact(k)[1:3]),
                                      _reached(index, surface))
    for predicate in sorted(index.predicates.names()) if predicates is None else predicates:
        values["predicates"][predicate] = index.predicates.objects(predicate)
    for question in questions:
        values["mentions"][question] = [index.names.surface(sid) for sid in index.names.mentions(question)]
    if whole_trie:
        values["trie"] = trie_keys(index.surface_trie, index.names.surface)
    return values


def _reached(index: KBIndex, surface: str) -> str | None:
    """The surface whose key the surface trie holds for `surface`'s tokens, if any."""
    node: int | None = ROOT
    for token in index.tokenizer.encode(surface) + [index.tokenizer.sep_id]:
        node = index.surface_trie.step(node, token)
        if node is None:
            return None
        if node < 0:
            return index.names.surface(value_of(node))
    return None
