"""Ranking: which keys are a question's candidates, the reranker and its evidence (answer kinds,
naming weights, synonyms), the confidence calibrator, the question wording that is no name, and the one format the fitted models are saved in."""
