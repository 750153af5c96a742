from hypothesis import given, settings
from hypothesis import strategies as st

from kgqa.kb.trie import ROOT, TokenTrie, value_of

TERMINATOR = 1
keys = st.lists(st.lists(st.integers(2, 7), max_size=6).map(lambda k: tuple(k) + (TERMINATOR,)),
                min_size=1, max_size=40)


def allowed_after(trie, prefix):
    """The tokens the trie allows after `prefix` (none once a key is complete or off the trie),
    by the decoder's two queries: `step` down the prefix, then `children`."""
    node = ROOT
    for token in prefix:
        node = trie.step(node, token)
        if node is None or node < 0:
            return []
    return trie.children(node).tolist()


def brute_force(all_keys, prefix):
    return sorted({k[len(prefix)] for k in all_keys if len(k) > len(prefix) and k[:len(prefix)] == prefix})


@settings(max_examples=150, deadline=None)
@given(keys, st.lists(st.integers(1, 8), max_size=7))
def test_allowed_next_tokens_equal_a_brute_force_scan(all_keys, random_prefix):
    trie = TokenTrie.build((k, i) for i, k in enumerate(all_keys))
    for key in all_keys:
        for depth in range(len(key) + 1):
            assert allowed_after(trie, key[:depth]) == brute_force(all_keys, key[:depth])
    assert allowed_after(trie, tuple(random_prefix)) == brute_force(all_keys, tuple(random_prefix))


@settings(max_examples=100, deadline=None)
@given(keys)
def test_walking_a_key_yields_its_first_value(all_keys):
    trie = TokenTrie.build((k, i) for i, k in enumerate(all_keys))
    first = {}
    for i, k in enumerate(all_keys):
        first.setdefault(k, i)
    for key, value in first.items():
        node = ROOT
        for token in key[:-1]:
            node = trie.step(node, token)
            assert node is not None and node >= 0
        assert value_of(trie.step(node, key[-1])) == value


def test_step_off_the_trie_is_none_and_saved_trie_reopens(tmp_path):
    trie = TokenTrie.build([((5, 6, 1), 0), ((5, 7, 1), 1)])
    assert trie.step(ROOT, 6) is None
    trie.save(str(tmp_path), "t")
    reopened = TokenTrie.open(str(tmp_path), "t")
    assert allowed_after(reopened, (5,)) == [6, 7]
    assert allowed_after(reopened, (5, 7, 1)) == []
