"""Whole-pipeline orchestration: model selection over cross-validation and ``auto``."""
