"""Hot reload: load a bundle beside the serving one, check and warm it, then swap atomically."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.core.errors import RecoError
from server.core.model import LoadedModel
from server.core.registry import ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did: swapped in a version, or kept the old model because of `error`."""

    swapped: bool
    version: str
    error: str


class Reloader:
    """Reloads one variant at a time (a lock serialises them); a failed bundle never replaces a
    good one. `load` does the loading, parity probe and warm-up; the registry swap is atomic,
    so requests that already picked the old model finish on it."""

    def __init__(
        self,
        registry: ModelRegistry,
        load: Callable[[Path], LoadedModel],
        on_result: Callable[[ReloadResult], None] = lambda _: None,
    ) -> None:
        self.registry = registry
        self.load = load
        self.on_result = on_result
        self.last_error = ""
        self.last_time: float | None = None
        self._lock = threading.Lock()

    def reload(self, variant: str, bundle: Path) -> ReloadResult:
        """Loads `bundle` for `variant` and swaps it in, or keeps the current model."""
        with self._lock:
            current = {v.name: v.model for v in self.registry.variants()}.get(variant)
            try:
                model = self.load(bundle)
            except (RecoError, OSError, ValueError) as exc:
                result = ReloadResult(False, current.version if current else "", str(exc))
                self.last_error = str(exc)
                log.error("reload of variant %s from %s failed; keeping %s: %s",
                          variant, bundle, result.version or "nothing", exc)  # fmt: skip
            else:
                self.registry.install(variant, model)
                result = ReloadResult(True, model.version, "")
                self.last_error = ""
                log.info("variant %s now serves %s (%s)", variant, model.version, model.bundle_dir)
            self.last_time = time.time()
        self.on_result(result)
        return result


class BundleWatcher(threading.Thread):
    """Polls a bundle path (typically the artifacts/latest symlink) and reloads the variant
    when the directory it resolves to changes."""

    def __init__(self, reloader: Reloader, variant: str, path: Path, interval: float) -> None:
        super().__init__(name=f"watch-{variant}", daemon=True)
        self.reloader = reloader
        self.variant = variant
        self.path = path
        self.interval = interval
        self.stopped = threading.Event()
        self._seen = path.resolve()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            target = self.path.resolve()
            if target != self._seen:
                log.info(
                    "%s now points to %s; reloading variant %s", self.path, target, self.variant
                )
                self._seen = target  # a failed bundle is not retried until the path moves again
                self.reloader.reload(self.variant, self.path)
