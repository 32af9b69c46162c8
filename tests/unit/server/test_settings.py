"""Server settings: every rule between settings, each failure naming the settings involved."""

from __future__ import annotations

from pathlib import Path

import pytest

from reco.settings import SettingError
from server.core.recommend import MAX_K
from server.settings import MIN_MESSAGE_BYTES, parse_settings


def test_defaults_are_valid() -> None:
    settings = parse_settings([], {})
    assert settings.retrieval_size <= settings.catalog_limit
    assert settings.address == "127.0.0.1:50051" and not settings.tls
    assert settings.admin_address == ""  # preflight puts the default Unix socket here


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--catalog-limit", "200"], ("--retrieval-size", "--catalog-limit")),
        (["--catalog-limit", "10"], ("--catalog-limit",)),
        (["--retrieval-size", "10", "--catalog-limit", "100"], ("--retrieval-size",)),
        (["--catalog-limit", "1000000"], ("--catalog-limit",)),
        (["--drain-seconds", "6"], ("--drain-seconds", "--grace-seconds")),
        (["--metrics-port", "50051"], ("--metrics-port", "--port")),
        (["--workers", "2", "--session-store", "redis://h/0", "--port", "0"], ("--port",)),
        (["--workers", "2"], ("--workers",)),
        (["--tls-key", "k.pem"], ("--tls-cert", "--tls-key")),
        (["--tls-client-ca", "ca.pem"], ("--tls-client-ca",)),
        (["--ab-share", "1"], ("--ab-share",)),
        (["--watch-seconds", "0.01"], ("--watch-seconds",)),
        (["--max-message-bytes", str(MIN_MESSAGE_BYTES - 1)], ("--max-message-bytes",)),
        (["--host", ""], ("--host",)),
        (["--health-port", "50051"], ("--health-port", "--port")),
        (["--health-port", "9464"], ("--health-port", "--metrics-port")),
        (["--session-store", "redis+cluster://h:6379/2"], ("--session-store",)),
        (["--inference-model-name", ""], ("--inference-model-name",)),
        (["--max-connection-age-seconds", "-1"], ("--max-connection-age-seconds",)),
    ],
)
def test_rules_between_settings(argv: list[str], named: tuple[str, ...]) -> None:
    with pytest.raises(SettingError) as error:
        parse_settings(argv, {})
    for name in named:
        assert name in str(error.value)


def test_retrieval_equal_to_the_catalog_limit_is_allowed() -> None:
    assert parse_settings(["--catalog-limit", "100", "--retrieval-size", "100"], {})


def test_the_retrieval_size_holds_the_largest_page() -> None:
    # A retrieval size below the largest k would answer a k=100 Recommend with fewer items.
    settings = parse_settings(["--catalog-limit", "100", "--retrieval-size", "100"], {})
    assert settings.retrieval_size >= MAX_K


def test_a_store_url_password_is_never_echoed() -> None:
    with pytest.raises(SettingError) as error:
        parse_settings(["--session-store", "redsi://user:hunter2@host:6379/0"], {})
    assert "hunter2" not in str(error.value)


def test_tls_and_ipv6_address() -> None:
    settings = parse_settings(["--tls-cert", "c.pem", "--tls-key", "k.pem", "--host", "::1"], {})
    assert settings.tls and settings.tls_cert == Path("c.pem")
    assert settings.address == "[::1]:50051"


def test_exploration_and_the_impression_log() -> None:
    settings = parse_settings([], {})
    assert settings.explore_epsilon == {} and settings.impression_log_dir is None
    assert parse_settings(["--explore-epsilon", "0.1"], {}).explore_epsilon == {"A": 0.1, "B": 0.1}
    assert parse_settings([], {"RECO_EXPLORE_EPSILON": "A=0.2,B=0"}).explore_epsilon == {
        "A": 0.2, "B": 0.0,
    }  # fmt: skip
    for bad in ("1.5", "A=x", "A=-0.1"):
        with pytest.raises(SettingError, match="--explore-epsilon"):
            parse_settings(["--explore-epsilon", bad], {})
    with pytest.raises(SettingError, match="--impression-log-queue"):
        parse_settings(["--impression-log-queue", "0"], {})


def test_connection_options_have_safe_defaults() -> None:
    from server.app import connection_options

    options = dict(connection_options(parse_settings([], {})))
    assert options["grpc.max_connection_age_ms"] == 300_000
    assert options["grpc.max_connection_age_grace_ms"] == 2**31 - 1  # streams are never cut
    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 10_000
    off = dict(connection_options(parse_settings(["--max-connection-age-seconds", "0"], {})))
    assert off["grpc.max_connection_age_ms"] == 2**31 - 1


def test_a_redis_cluster_url_is_a_session_store() -> None:
    settings = parse_settings(["--session-store", "redis+cluster://:pw@h:6379"], {})
    assert settings.session_store.startswith("redis+cluster://")


def test_the_shared_impression_log() -> None:
    url = "redis://:hunter2@host:6379/0"
    settings = parse_settings(["--impression-log-redis", url], {})
    assert settings.impression_log_redis == url and settings.impression_log_redis_maxlen == 100_000
    with pytest.raises(SettingError, match="are exclusive") as both:
        parse_settings(["--impression-log-redis", url, "--impression-log-dir", "logs"], {})
    with pytest.raises(SettingError, match="--impression-log-redis must be a redis") as scheme:
        parse_settings(["--impression-log-redis", "http://:hunter2@host/0"], {})
    assert "hunter2" not in str(both.value) + str(scheme.value)
    with pytest.raises(SettingError, match="--impression-log-redis-maxlen"):
        parse_settings(["--impression-log-redis-maxlen", "0"], {})
