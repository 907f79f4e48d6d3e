"""Inference: ``Predictor`` (the model folder's segmentation ensembles and findings ensemble), ``predict_folder``
(a folder of scans -> segmentations and findings.csv) and the model folder (``model_dir``)."""
