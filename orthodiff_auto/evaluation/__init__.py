"""Evaluation: segmentation metrics (Dice, HD95, volumes) and multi-label classification metrics."""
