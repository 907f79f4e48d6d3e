"""Whole-pipeline orchestration: the task registry (``train_fold``), model selection over cross-validation
(``model_selection``) and ``auto``."""
