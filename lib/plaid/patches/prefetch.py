"""Work read ahead of use: the next items produced in background threads or spawned processes while the
caller handles the current one (`prefetched`), and the one-thread-each process pool for it."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

ResultT = TypeVar("ResultT")
ItemT = TypeVar("ItemT")


def prefetched(items: Sequence[ItemT], produce: Callable[[ItemT], ResultT], workers: int = 1,
               lookahead: int = 2, executor: Executor | None = None) -> Iterator[tuple[ItemT, Future[ResultT]]]:
    """Yield ``(item, future of produce(item))`` in order, running ``produce`` for the next items in
    ``workers`` background threads while the caller handles the current one (reading and tissue masking
    of the next image overlap the model on this one). ``future.result()`` re-raises produce's error.

    A caller-owned ``executor`` (e.g. `preparation_processes`, kept alive across calls) replaces the
    threads; it is not shut down here.
    """
    if not items:
        return
    own = executor is None
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="plaid-prepare") if own else executor
    with pool if own else contextlib.nullcontext(pool):
        pending: deque[tuple[ItemT, Future[ResultT]]] = deque()
        upcoming = iter(items)
        for item in itertools.islice(upcoming, max(1, lookahead)):
            pending.append((item, pool.submit(produce, item)))
        while pending:
            item, future = pending.popleft()
            for later in itertools.islice(upcoming, 1):
                pending.append((later, pool.submit(produce, later)))
            yield item, future


def one_thread_each() -> None:
    """Limit this process's numpy/scipy (BLAS, OpenMP) and torch thread pools to one thread: preparation
    processes run side by side, one per core, rather than each spreading over every core."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def preparation_processes(workers: int) -> Executor:
    """Spawned worker processes for `prefetched`: image preparation free of the GIL, for many cores feeding
    a GPU, one thread each (`one_thread_each`). ``produce`` must then be picklable (e.g. a
    `functools.partial` of `prepare_file`)."""
    return ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn"),
                               initializer=one_thread_each)
