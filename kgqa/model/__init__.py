"""The seq2seq model: tokenizer, network, checkpoints, the decoder stepper and the prefix-tree pass."""
