"""Ranking: candidates, the reranker and its evidence (string similarity, synonyms)."""
