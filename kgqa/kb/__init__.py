"""The knowledge base: reading KB files, building and opening the index, the token trie."""
