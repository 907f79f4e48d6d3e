"""``extract_fingerprint``: analyse every train and unlabeled scan in parallel, then reduce per view."""

from __future__ import annotations

from orthodiff_auto.data.dataset import RawDataset
from orthodiff_auto.data.views import VIEWS
from orthodiff_auto.fingerprint.analyzer import SAMPLES_PER_CASE, CaseTask, analyze_case
from orthodiff_auto.fingerprint.reducer import reduce_dataset
from orthodiff_auto.fingerprint.schema import DatasetFingerprint
from orthodiff_auto.utils.parallel import run_parallel

FINGERPRINT_SUBSETS = ("train", "unlabeled")


def extract_fingerprint(dataset: RawDataset, num_workers: int = 2, progress: bool = True,
                        samples_per_case: int = SAMPLES_PER_CASE) -> DatasetFingerprint:
    """The fingerprint of ``dataset`` (test scans are never read). Deterministic for a given dataset."""
    labels = tuple(sorted(dataset.description.labels.items(), key=lambda kv: kv[1]))
    tasks = [CaseTask(s.case_id, s.view, s.subset, str(s.image), None if s.label is None else str(s.label),
                      str(dataset.root), labels, samples_per_case,
                      ignore_label=dataset.description.ignore_label)
             for s in dataset.scans if s.subset in FINGERPRINT_SUBSETS]
    results = list(run_parallel(analyze_case, tasks, num_workers, desc="fingerprint", progress=progress))
    return reduce_dataset(results, dataset.description, dataset.findings, VIEWS)
