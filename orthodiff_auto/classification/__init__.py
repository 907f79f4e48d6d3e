"""Multi-label abnormality classification: ways of reading findings ("readers") behind one interface.

Where things go:

- ``reader``: the interface (``Reader``: run folder name, ``train_fold``, the files a fold reads, ``load`` ->
  ``FindingsModel`` with ``prepare(view, scan)`` and ``probabilities(inputs, present, clinical)``) and the
  registry ``READERS``; ``readers``: the built-in ones. **A new reader is one new module** that builds a
  ``Reader`` and calls ``register_reader`` (and is imported in ``readers`` to be built in); the dispatch sites
  (``run``, ``inference``, ``training.fold.FoldRequest.variant``, ``pipeline.auto``) look it up by name.
- the built-in readers, one module each: ``finetune`` (the default: encoders trained on each view's region,
  and the fused models: gate, concat, xattn, and ``stacked``/``mpae_fold`` fitted out of fold), ``noised``,
  ``diffusion_reader`` (heads on frozen denoiser features; the models in ``diffusion_head``), ``anatomy_fold``
  (logistic regression on the features of the fold's segmentation, ``anatomy``).
- what readers share: ``config`` (``ClassificationConfig``), a fold's cases (``fold``), the loop and
  validation of a trained fold (``trained_fold``, ``validation``), the one writer of a fold's outputs
  (``fold_outputs``), metrics files (``metrics_io``), inputs and batches (``data``), models (``model``,
  ``fusion``, ``region_models``), tasks of the generic loop (``task``), heads on out-of-fold logits
  (``mpae``, ``oof_fusion``, ``clinical_inputs``).
- ``run``: ``train_classification_fold`` (a lookup); ``inference``: ``FindingsEnsemble`` (a lookup by the
  checkpoints' kind).

See documentation/classification.md.
"""
