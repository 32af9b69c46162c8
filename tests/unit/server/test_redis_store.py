"""The Redis store's pure parts: URL redaction, what a persistence setting means, retries."""

from __future__ import annotations

import pytest
import redis

from server.core import redis_store
from server.core.redis_store import (
    Persistence,
    RedisStore,
    SessionStoreUnavailable,
    redacted,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@cache:6380/1", "redis://:***@cache:6380/1"),
        ("rediss://app:hunter2@cache.example/0", "rediss://app:***@cache.example/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("unix:///var/run/redis/redis.sock?db=0", "unix://.../redis.sock"),
    ],
)
def test_urls_are_shown_without_passwords_or_socket_directories(url: str, shown: str) -> None:
    assert redacted(url) == shown


@pytest.mark.parametrize(
    ("found", "durable", "says"),
    [
        (Persistence(True, "yes", "always"), True, "every acknowledged event is on disk"),
        (Persistence(True, "yes", "everysec"), False, "up to about 1 s of acknowledged events"),
        (Persistence(True, "yes", "no"), False, "the OS flushes the append-only file"),
        (Persistence(True, "no", "always", "3600 1"), False, "RDB snapshots only (save '3600 1')"),
        (Persistence(True, "no", "everysec"), False, "are LOST when Redis restarts"),
        (Persistence(False, reason="CONFIG GET was refused: unknown command"), False,
         "cannot verify Redis persistence (CONFIG GET was refused"),
    ],
)  # fmt: skip
def test_each_persistence_setting_says_what_happens_to_acknowledged_events(
    found: Persistence, durable: bool, says: str
) -> None:
    assert found.durable is durable
    assert says in found.describe()


class Flaky:
    """An operation failing with `error` the first `failures` times."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> RedisStore:
    slept: list[float] = []
    monkeypatch.setattr(redis_store.time, "sleep", slept.append)
    instance = RedisStore("redis://:hunter2@127.0.0.1:1/0", attempts=3, backoff_seconds=0.02)
    instance.slept = slept  # type: ignore[attr-defined]
    return instance


def test_connection_errors_are_retried_with_growing_backoff(store: RedisStore) -> None:
    flaky = Flaky(2, redis.ConnectionError("Error 111 connecting to 127.0.0.1:1."))
    assert store._retrying(flaky, deadline=None) == "done"
    assert flaky.calls == 3
    first, second = store.slept  # type: ignore[attr-defined]
    assert 0.01 <= first <= 0.02 and 0.02 <= second <= 0.04


def test_retries_stop_at_the_attempt_limit_with_a_message_free_of_secrets(
    store: RedisStore,
) -> None:
    flaky = Flaky(5, redis.TimeoutError("Timeout reading from 127.0.0.1:1"))
    with pytest.raises(SessionStoreUnavailable) as refused:
        store._retrying(flaky, deadline=None)
    assert flaky.calls == 3
    message = str(refused.value)
    assert "timed out" in message and "127.0.0.1" not in message and "hunter2" not in message


def test_no_retry_when_another_attempt_would_not_fit_before_the_deadline(
    store: RedisStore,
) -> None:
    flaky = Flaky(1, redis.ConnectionError("refused"))
    with pytest.raises(SessionStoreUnavailable):
        store._retrying(flaky, deadline=redis_store.time.monotonic() + 0.1)  # < one timeout
    assert flaky.calls == 1 and store.slept == []  # type: ignore[attr-defined]


def test_errors_that_a_retry_cannot_fix_are_not_retried(store: RedisStore) -> None:
    flaky = Flaky(1, redis.ResponseError("READONLY You can't write against a read only replica."))
    with pytest.raises(SessionStoreUnavailable, match="refused the operation"):
        store._retrying(flaky, deadline=None)
    assert flaky.calls == 1
