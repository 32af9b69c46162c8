"""Garbage-collector pauses: frozen start-up objects, and every collection timed into metrics."""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

from server.metrics import Metrics

log = logging.getLogger(__name__)


def freeze_loaded_objects() -> int:
    """Collects once, then moves every object alive now (modules, the loaded and warmed models,
    catalog tables) to the collector's permanent generation, so no later collection scans them
    again; a full collection then costs what was allocated since. Returns the objects frozen.

    Called after the models are loaded and after each reload: an old model is freed by
    reference counting when it is swapped out (it holds no reference cycles)."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("froze %d objects alive after loading (garbage collections skip them)", frozen)
    return frozen


class GcPauseRecorder:
    """Times every collection with gc.callbacks into reco_gc_pause_seconds{generation}.

    The callback only appends to a list (no locks: a collection can start while a metrics lock
    is held); a daemon thread moves the samples into the histogram every `interval` seconds."""

    def __init__(self, metrics: Metrics, interval: float = 0.5) -> None:
        self._children = [metrics.gc_pauses.labels(str(g)) for g in range(3)]
        self._samples: list[tuple[int, float]] = []
        self._started = 0.0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain_loop, name="gc-pauses", daemon=True)

    def start(self) -> GcPauseRecorder:
        """Installs the callback and starts the drain thread."""
        gc.callbacks.append(self._callback)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Removes the callback and drains what is left."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        self._stop.set()
        self.drain()

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._samples.append((info["generation"], time.perf_counter() - self._started))

    def drain(self) -> None:
        """Moves the recorded pauses into the histogram."""
        samples, self._samples = self._samples, []
        for generation, seconds in samples:
            self._children[generation].observe(seconds)

    def _drain_loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.drain()
