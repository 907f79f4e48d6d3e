"""``train_fold ... cls VIEW FOLD`` and ``train_fold ... cls fused FOLD``: the reader named by
``classifier_features`` (``reader.READERS``; the built-in ones in ``readers``) trains and validates the fold.

Outputs in ``request.output_dir()`` (``results/cls/<view|fused>/<variant>/fold_<k>/``, the variant named by the
reader): ``checkpoint_final.pt`` (extras: plans, findings order, inputs, split, the reader's ``kind`` and what
its ``load`` needs, and the thresholds chosen on the validation fold), ``validation_predictions.csv``,
``summary.json``, and for a reader trained by the generic loop ``checkpoint_{latest,best}.pt``,
``progress.png`` and ``training_log.txt`` (``fold_outputs`` writes what every reader writes).
"""

from __future__ import annotations

from typing import Any

from orthodiff_auto.classification.config import ClassificationConfig
from orthodiff_auto.classification.reader import reader_named
from orthodiff_auto.classification.readers import READERS
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.training.distributed import distributed_device, shutdown, training_timeout
from orthodiff_auto.training.fold import FoldRequest


def train_classification_fold(request: FoldRequest, plans: Plans, log=print,
                              cls_config: ClassificationConfig | None = None) -> dict[str, Any]:
    """Train one classification fold (a view, or ``fused``) with its reader and validate it; returns the summary."""
    cls_config = cls_config or ClassificationConfig.from_training(request.config)
    reader = reader_named(cls_config.classifier_features)
    device, ctx = distributed_device(request.device, timeout=training_timeout(request.config))
    try:
        return reader.train_fold(request, plans, cls_config, device, ctx, log)
    finally:
        shutdown(ctx)


__all__ = ["READERS", "train_classification_fold"]
