"""Multi-label abnormality classification: one whole-field-of-view classifier per view, and their fusion.

- ``config``: ``ClassificationConfig`` (fusion mode, threshold rule, sampling, mirroring), read from the
  training config's fields when they exist.
- ``data``: the seeded batch datasets and their augmentation (the inputs themselves are
  ``preprocessing.classification_input``).
- ``model``: the plans' encoder, attention pooling per finding, a multi-label head.
- ``fusion``: the view classifiers of a fold fused by a per-finding gate or by concatenation, with
  missing views masked out; ``stacked``: a gate fitted on out-of-fold predictions instead.
- ``frozen``: light heads on frozen diffusion features (``classifier_features=diffusion``).
- ``task``: the tasks of the generic training loop; ``fold``: a fold's cases and where fused branches start;
  ``run``: ``train_classification_fold``; ``validation``: the fold's validation after training.
- ``metrics_io``: validation predictions CSV, thresholds and the metrics block of summary.json.
- ``inference``: ``FindingsEnsemble``, the findings of new cases from a configuration's fold checkpoints.

See documentation/classification.md.
"""
