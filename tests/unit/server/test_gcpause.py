"""GC pauses: every collection is timed into the metrics, and loaded objects are frozen."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry

from server.gcpause import GcPauseRecorder, freeze_loaded_objects
from server.metrics import Metrics


def test_every_collection_is_recorded_by_generation() -> None:
    registry = CollectorRegistry()
    recorder = GcPauseRecorder(Metrics(registry), interval=60).start()
    try:
        gc.collect(0)
        gc.collect(2)
        recorder.drain()
    finally:
        recorder.stop()
    count = registry.get_sample_value
    assert (count("reco_gc_pause_seconds_count", {"generation": "2"}) or 0) >= 1
    assert (count("reco_gc_pause_seconds_count", {"generation": "0"}) or 0) >= 1
    assert (count("reco_gc_pause_seconds_sum", {"generation": "2"}) or 0) > 0


def test_objects_alive_after_loading_are_frozen_out_of_collections() -> None:
    kept = [[i] for i in range(10_000)]  # tracked objects, like a loaded model's
    try:
        assert freeze_loaded_objects() >= len(kept)
        assert sum(1 for o in gc.get_objects() if o is kept) == 0  # no longer scanned
    finally:
        gc.unfreeze()
