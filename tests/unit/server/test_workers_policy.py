"""The supervisor's restart policy: capped exponential backoff, giving up only when nothing
can serve."""

from __future__ import annotations

from pathlib import Path

from server.settings import parse_settings
from server.workers import (
    BACKOFF_CAP_SECONDS,
    FAILED_STARTS_TO_GIVE_UP,
    Slot,
    backoff_seconds,
    gives_up,
    worker_settings,
)


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = [backoff_seconds(n) for n in range(1, 12)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == BACKOFF_CAP_SECONDS == delays[-1]
    assert delays == sorted(delays)


def test_gives_up_only_when_no_worker_serves_and_all_failed_their_starts() -> None:
    failing = [Slot(0, failed_starts=FAILED_STARTS_TO_GIVE_UP) for _ in range(2)]
    assert gives_up(failing)
    one_short = [Slot(0, failed_starts=FAILED_STARTS_TO_GIVE_UP), Slot(1, failed_starts=1)]
    assert not gives_up(one_short)
    serving = Slot(1, failed_starts=FAILED_STARTS_TO_GIVE_UP, serving_since=1.0)
    serving.process = object()  # type: ignore[assignment]  # alive
    assert not gives_up([Slot(0, failed_starts=99), serving])


def test_worker_settings_have_their_own_admin_socket_and_no_metrics() -> None:
    settings = parse_settings(
        ["--workers", "2", "--session-store", "redis://h/0",
         "--admin-address", "unix:/run/reco/admin.sock"], {},
    )  # fmt: skip
    worker = worker_settings(settings, 1)
    assert worker.metrics_port == -1
    assert worker.admin_address == "unix:/run/reco/admin.1.sock"
    assert worker.bundle == Path("artifacts/latest")
