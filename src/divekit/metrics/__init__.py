"""Evaluation metrics that need more than a loss: BLEU for translation."""
