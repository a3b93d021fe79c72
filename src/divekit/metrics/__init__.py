"""Evaluation metrics that need more than a loss: BLEU for translation, mean average precision for detection,
pixel accuracy and IoU for segmentation."""
