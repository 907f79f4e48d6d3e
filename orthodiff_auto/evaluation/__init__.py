"""Evaluation: predictions in a folder against a dataset's test references (the metric functions themselves are
``training.segmentation_metrics`` and ``training.classification_metrics``)."""
