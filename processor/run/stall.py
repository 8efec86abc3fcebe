"""Stall detection: a Dask run whose workers are paused (memory) or gone makes no progress.

Workers pause when their memory passes Dask's pause threshold (80 % of ``memory_limit``) and
then never take another task; without a watchdog the run waits forever without a word.
:class:`StallWatchdog` polls the scheduler; when no task has finished for
``executor.stall_timeout_s`` while workers are paused or missing, it stops the run with a
:class:`StallError` naming the memory setting and the measured worker memory. A chunk whose
worker is killed (memory) every time it runs it ends the run with the same kind of line.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from typing import Any

from processor.errors import StallError

log = logging.getLogger(__name__)


def _transitions(dask_scheduler: Any) -> int:
    """The scheduler's transition counter (runs on the scheduler; grows as tasks finish)."""
    return int(dask_scheduler.transition_counter)


def _killed_worker(exc: BaseException) -> bool:
    """Whether ``exc`` (or one it came from) is Dask's KilledWorker, as coffea re-raises it."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__name__ == "KilledWorker" or "KilledWorker exception" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _mb(n: float | None) -> str:
    return "(not measured)" if n is None else f"{n / 1e6:.0f} MB"


class StallWatchdog:
    """Context manager around a Dask computation; raises :class:`StallError` on a stall.

    A background thread samples the scheduler every ``poll_s``; a stall is declared when the
    transition counter has not moved for ``timeout_s`` while at least one worker is paused or
    no worker is connected. The main thread is then interrupted (SIGINT to it alone), the run
    unwinds as on Ctrl-C (cluster shut down, checkpoints kept) and the interrupt is turned into
    the StallError on leaving the block.
    """

    def __init__(
        self, client: Any, timeout_s: float | None, memory_key: str, poll_s: float | None = None
    ) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.memory_key = memory_key
        self.poll_s = poll_s if poll_s is not None else min(1.0, (timeout_s or 4.0) / 4)
        self.message: str | None = None
        self._max_memory: int | None = None
        self._limit: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._main = threading.main_thread().ident

    def __enter__(self) -> StallWatchdog:
        if (
            self.client is not None
            and self.timeout_s
            and threading.current_thread() is threading.main_thread()
        ):
            self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.message is not None:  # whatever the interrupt turned into on its way up
            raise StallError(self.message) from None
        if exc is not None and self.client is not None and _killed_worker(exc):
            raise StallError(self._describe_killed(exc)) from None
        return False

    def _describe_killed(self, exc: BaseException) -> str:
        """One line for a chunk whose worker the nanny killed (memory) or that crashed it."""
        where = re.search(r"filename='([^']+)'", str(exc))
        return (
            "a Dask worker died every time it ran one chunk"
            + (f" of {where.group(1)}" if where else "")
            + f" (killed for exceeding its memory limit, or crashed); {self._advice()}"
        )

    def _sample(self) -> tuple[int, list[dict[str, Any]]]:
        counter = self.client.run_on_scheduler(_transitions)
        workers = list(self.client.scheduler_info(n_workers=-1).get("workers", {}).values())
        return counter, workers

    def _measure(self, workers: list[dict[str, Any]]) -> None:
        """Remember the largest worker memory and limit seen (workers may be gone later)."""
        for w in workers:
            used = (w.get("metrics") or {}).get("memory")
            if used:
                self._max_memory = max(self._max_memory or 0, int(used))
            if w.get("memory_limit"):
                self._limit = int(w["memory_limit"])

    def _describe(self, workers: list[dict[str, Any]], idle_s: float) -> str:
        paused = [w for w in workers if str(w.get("status", "")).endswith("paused")]
        if workers:
            state = f"{len(paused)} of {len(workers)} worker(s) paused for lack of memory"
        else:
            state = "no worker connected (killed and restarted for exceeding their memory?)"
        return (
            f"the run stalled: no task finished for {idle_s:.0f} s with {state}; {self._advice()}"
        )

    def _advice(self) -> str:
        """The end of every memory line: what was measured, what to raise, how to continue."""
        return (
            f"measured worker memory {_mb(self._max_memory)} of a {_mb(self._limit)} limit: "
            f"raise {self.memory_key} (or lower executor.chunksize), then continue with "
            "runner.py --resume RUN_DIR (finished chunks are checkpointed)"
        )

    def _watch(self) -> None:
        last_counter: int | None = None
        last_change = time.monotonic()
        first = True  # sample at once: a worker killed early must still have been measured
        while first or not self._stop.wait(self.poll_s):
            first = False
            try:
                counter, workers = self._sample()
            except Exception as exc:  # the cluster is going down: nothing to watch any more
                log.debug("stall watchdog: cannot sample the scheduler: %s", exc)
                return
            self._measure(workers)
            now = time.monotonic()
            if counter != last_counter:
                last_counter, last_change = counter, now
                continue
            stuck = not workers or any(str(w.get("status", "")).endswith("paused") for w in workers)
            if not stuck:
                last_change = now  # busy, not stalled: a long chunk is not a stall
                continue
            if now - last_change >= (self.timeout_s or 0):
                self.message = self._describe(workers, now - last_change)
                log.debug("stall detected: %s", self.message)
                if self._main is not None:
                    signal.pthread_kill(self._main, signal.SIGINT)
                return


__all__ = ["StallWatchdog"]
