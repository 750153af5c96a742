"""Ranking: which keys are a question's candidates, the reranker and its evidence (answer kinds,
naming weights, synonyms), the confidence calibrator, and the one format the fitted models are saved in."""
