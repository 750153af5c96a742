"""Constrained decoding: settings, the trie constraint and look-ahead processors, beam search."""
