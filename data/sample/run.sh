#!/usr/bin/env bash
# The sample job: train a small model on data/sample, answer its dev and test questions, score dev.
# --holdout 0: the sample's train split is too small to hold predicates out for choosing the
# checkpoint and fitting the reranker (the KgCLUE recipe does both), so the last epoch is kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=checkpoints/sample
kgqa train --train data/sample/train.json --dev data/sample/dev.json --kb data/sample/kb.tsv \
  --output "$out" --epochs 20 --batch-size 16 --d-model 128 --layers 2 --kb-questions 300 --dev-limit 0 \
  --holdout 0
kgqa predict data/sample/dev.json --checkpoint "$out/best" --kb data/sample/kb.tsv -o "$out/dev_pred.json" --top-k 3
kgqa evaluate "$out/dev_pred.json" data/sample/dev.json
kgqa submit data/sample/test.json --checkpoint "$out/best" --kb data/sample/kb.tsv -o "$out/submit"
