"""Hot reload: load a bundle beside the serving one, check and warm it, then swap atomically."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reco import OutsideRootError, resolve_under_root
from server.core.errors import InvalidArgument, RecoError
from server.core.model import LoadedModel
from server.core.registry import PRIMARY, ModelRegistry

log = logging.getLogger(__name__)

# Longer than any real path (PATH_MAX); refused before the file system sees it.
MAX_BUNDLE_PATH_CHARS = 4096


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
        bundles: Mapping[str, Path] | None = None,
        root: Path | None = None,
    ) -> None:
        self.registry = registry
        self.load = load
        self.on_result = on_result
        self.bundles = dict(bundles or {})  # variant -> configured bundle path
        self.root = root  # a real path; requested bundles must resolve inside it
        self.last_error = ""
        self.last_time: float | None = None
        self._lock = threading.Lock()

    def reload_request(
        self, variant: str, bundle_path: str, reload_configured: bool
    ) -> ReloadResult:
        """The Admin ReloadModel operation: loads `bundle_path` (relative to the bundle root, or
        absolute inside it) for `variant` ("" = the primary), or with `reload_configured` the
        variant's configured path again. An empty request reloads nothing: asking for the
        configured path must be explicit. Raises InvalidArgument for a bad request."""
        variant = variant or PRIMARY
        if variant not in self.bundles:
            raise InvalidArgument("variant", variant[:64], f"must be one of {sorted(self.bundles)}")
        if reload_configured:
            if bundle_path:
                raise InvalidArgument("bundle_path", bundle_path[:64],
                                      "must be empty when reload_configured is set")  # fmt: skip
            return self.reload(variant, self.bundles[variant])
        if not bundle_path:
            raise InvalidArgument(
                "bundle_path", "", "must name a bundle under the bundle root (or set "
                "reload_configured to re-read the configured path)",
            )  # fmt: skip
        return self.reload(variant, self._under_root(bundle_path))

    def _under_root(self, bundle_path: str) -> Path:
        if len(bundle_path) > MAX_BUNDLE_PATH_CHARS or "\0" in bundle_path:
            raise InvalidArgument(
                "bundle_path", bundle_path[:64],
                f"must be a path of at most {MAX_BUNDLE_PATH_CHARS} characters without NUL",
            )  # fmt: skip
        if self.root is None:
            raise InvalidArgument(
                "bundle_path", bundle_path[:64], "cannot be loaded: no bundle root"
            )
        try:
            return resolve_under_root(self.root, Path(bundle_path))
        except OutsideRootError as exc:
            log.warning("ReloadModel refused %r: %s", bundle_path[:256], exc)
            raise InvalidArgument("bundle_path", bundle_path[:64], f"{exc}") from None

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
