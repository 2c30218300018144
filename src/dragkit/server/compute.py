"""One compute thread for the whole server, shared fairly by all tabs.

Every call into the generator or the drag engine runs here, never on the
event loop, so the page stays responsive while a drag optimises.  Work is
queued per *owner* (a tab) and owners are served round-robin: a tab's job
runs one unit, then the next tab with pending work gets its turn.  A *loop*
job (a drag) runs one step per turn, so two tabs dragging at once each get
every other step and a one-off action of a third tab (a new seed, a click)
waits at most one step.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Hashable

log = logging.getLogger("dragkit.server")


class _Job:
    __slots__ = ("fn", "loop", "future", "started")

    def __init__(self, fn: Callable[[], Any], loop: bool) -> None:
        self.fn = fn
        self.loop = loop
        self.started = False
        self.future: Future = Future()


class ComputeQueue:
    """A single worker thread running jobs round-robin across owners."""

    def __init__(self, name: str = "dragkit-compute") -> None:
        self._cv = threading.Condition()
        self._jobs: dict[Hashable, deque[_Job]] = {}
        self._order: deque[Hashable] = deque()
        self._closed = False
        self._thread = threading.Thread(target=self._worker, name=name, daemon=True)
        self._thread.start()

    def submit(self, owner: Hashable, fn: Callable[[], Any]) -> Future:
        """Run ``fn()`` once, in turn; the future gets its result or exception."""
        return self._put(owner, _Job(fn, loop=False))

    def submit_loop(self, owner: Hashable, fn: Callable[[], Any]) -> Future:
        """Call ``fn()`` once per turn until it returns something other than None."""
        return self._put(owner, _Job(fn, loop=True))

    def pending(self, owner: Hashable) -> int:
        with self._cv:
            return len(self._jobs.get(owner, ()))

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._closed = True
            for jobs in self._jobs.values():
                for job in jobs:
                    job.future.cancel()
            self._jobs.clear()
            self._order.clear()
            self._cv.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _put(self, owner: Hashable, job: _Job) -> Future:
        with self._cv:
            if self._closed:
                job.future.set_exception(RuntimeError("the server is shutting down"))
                return job.future
            jobs = self._jobs.get(owner)
            if jobs is None:
                jobs = self._jobs[owner] = deque()
                self._order.append(owner)
            jobs.append(job)
            self._cv.notify()
        return job.future

    def _worker(self) -> None:
        while True:
            with self._cv:
                while not self._order and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                owner = self._order.popleft()
                job = self._jobs[owner][0]
            if not job.started and not job.future.set_running_or_notify_cancel():
                finished = True  # cancelled before it ran
            else:
                job.started = True
                try:
                    result, error = job.fn(), None
                except BaseException as exc:  # delivered to the awaiting side
                    result, error = None, exc
                finished = error is not None or not job.loop or result is not None
                if finished:
                    if error is not None:
                        job.future.set_exception(error)
                    else:
                        job.future.set_result(result)
            with self._cv:
                jobs = self._jobs.get(owner)
                if jobs is None:  # closed meanwhile
                    continue
                if finished and jobs and jobs[0] is job:
                    jobs.popleft()
                if jobs:
                    self._order.append(owner)  # back of the line: fairness
                else:
                    del self._jobs[owner]
