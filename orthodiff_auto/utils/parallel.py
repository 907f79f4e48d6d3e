"""Run a function over tasks in spawned worker processes with a tqdm progress bar.

Spawn-safe: workers import the function's module fresh (no fork of a process holding threads or torch state).
Each worker is limited to one BLAS/OpenMP thread, so ``num_workers`` processes use ``num_workers`` cores.
With ``num_workers <= 1`` (or a single task) everything runs in this process.
"""

from __future__ import annotations

import multiprocessing
import sys
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "BLOSC_NTHREADS")


@contextmanager
def _single_threaded_children():
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    try:
        for k in _THREAD_VARS:
            os.environ[k] = "1"
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_parallel(fn: Callable[[T], R], tasks: Iterable[T], num_workers: int = 2, desc: str = "",
                 progress: bool = True) -> Iterator[R]:
    """Yield ``fn(task)`` for every task, in completion order. ``fn`` must be a module-level function.

    An exception in a worker is raised here and the remaining work is cancelled; a worker that dies (e.g.
    killed for memory) raises ``BrokenProcessPool`` instead of hanging; so does KeyboardInterrupt.
    """
    tasks = list(tasks)
    if not tasks:
        return
    # drawn only on a terminal: a redirected log gets no carriage returns
    bar = tqdm(total=len(tasks), desc=desc, disable=not (progress and sys.stderr.isatty()), unit="case", leave=True)
    try:
        if num_workers <= 1 or len(tasks) == 1:
            for t in tasks:
                yield fn(t)
                bar.update()
            return
        ctx = multiprocessing.get_context("spawn")
        with _single_threaded_children():
            pool = ProcessPoolExecutor(max_workers=min(num_workers, len(tasks)), mp_context=ctx)
            try:
                futures = [pool.submit(fn, t) for t in tasks]
                for fut in as_completed(futures):
                    result = fut.result()
                    bar.update()
                    yield result
            except BaseException:
                for f in futures:
                    f.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
    finally:
        bar.close()
