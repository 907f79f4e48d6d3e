"""Multi-label abnormality classification: one whole-field-of-view classifier per view, and their fusion.

- ``config``: ``ClassificationConfig`` (fusion mode, threshold rule, sampling, mirroring), read from the
  training config's fields when they exist.
- ``data``: whole-field-of-view inputs at the planned classification spacing; seeded batch datasets.
- ``model``: the plans' encoder, attention pooling per finding, a multi-label head.
- ``fusion``: the view classifiers of a fold fused by a per-finding gate or by concatenation, with
  missing views masked out.
- ``task``: the two tasks of the generic training loop; ``run``: ``train_classification_fold``.
- ``metrics_io``: validation predictions CSV, thresholds and the metrics block of summary.json.

See documentation/classification.md.
"""
