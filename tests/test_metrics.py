"""Metrics: the Prometheus text a scraper reads, and the HTTP endpoint over real sockets."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dmbot.metrics import ACTION_KINDS, ACTION_OUTCOMES, Metrics, MetricsServer


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the rendered text, parsed back by Prometheus's own parser."""
    text = metrics.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, frozenset(labels.items()))]


def test_every_known_series_starts_at_zero() -> None:
    metrics = Metrics()
    assert value(metrics, "dmbot_polls_total", outcome="ok") == 0
    assert value(metrics, "dmbot_polls_total", outcome="failed") == 0
    for kind in ACTION_KINDS:
        for outcome in ACTION_OUTCOMES:
            assert value(metrics, "dmbot_actions_total", kind=kind, outcome=outcome) == 0
    assert value(metrics, "dmbot_rules_reloads_total", outcome="error") == 0
    assert value(metrics, "dmbot_outbox_pending") == 0
    assert value(metrics, "dmbot_last_success_timestamp_seconds") == 0
    assert math.isnan(value(metrics, "dmbot_rate_limit_remaining"))


def test_polls_count_events_requests_and_time_of_last_success() -> None:
    metrics = Metrics()
    first = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    metrics.poll_done(ok=True, new_events=3, requests=1, when=first)
    later = datetime(2026, 11, 2, 12, 1, tzinfo=UTC)
    metrics.poll_done(ok=False, new_events=0, requests=2, when=later)
    assert value(metrics, "dmbot_polls_total", outcome="ok") == 1
    assert value(metrics, "dmbot_polls_total", outcome="failed") == 1
    assert value(metrics, "dmbot_events_total") == 3
    assert value(metrics, "dmbot_api_requests_total") == 3
    # A failed poll is not a success: the timestamp stays at the last good one.
    assert value(metrics, "dmbot_last_success_timestamp_seconds") == first.timestamp()


def test_actions_outbox_rate_limit_and_reloads() -> None:
    metrics = Metrics()
    metrics.action("notify", "delivered")
    metrics.action("notify", "delivered")
    metrics.action("delete", "already_done")
    metrics.outbox_depth(7)
    metrics.outbox_depth(2)
    metrics.rate_remaining(299)
    metrics.rules_reload(ok=True)
    metrics.rules_reload(ok=False)
    metrics.rules_reload(ok=False)
    assert value(metrics, "dmbot_actions_total", kind="notify", outcome="delivered") == 2
    assert value(metrics, "dmbot_actions_total", kind="delete", outcome="already_done") == 1
    assert value(metrics, "dmbot_actions_total", kind="mark_read", outcome="ok") == 0
    assert value(metrics, "dmbot_outbox_pending") == 2
    assert value(metrics, "dmbot_rate_limit_remaining") == 299
    assert value(metrics, "dmbot_rules_reloads_total", outcome="ok") == 1
    assert value(metrics, "dmbot_rules_reloads_total", outcome="error") == 2
    metrics.rate_remaining(None)
    assert math.isnan(value(metrics, "dmbot_rate_limit_remaining"))


def test_instances_share_nothing() -> None:
    one, two = Metrics(), Metrics()
    one.action("mark_read", "ok")
    assert value(one, "dmbot_actions_total", kind="mark_read", outcome="ok") == 1
    assert value(two, "dmbot_actions_total", kind="mark_read", outcome="ok") == 0


def test_output_has_help_and_type_lines() -> None:
    text = Metrics().render().decode()
    assert "# HELP dmbot_outbox_pending Actions waiting in the outbox.\n" in text
    assert "# TYPE dmbot_actions_total counter\n" in text
    assert "# TYPE dmbot_last_success_timestamp_seconds gauge\n" in text


# -- the HTTP endpoint ---------------------------------------------------------------------


class Verdict:
    def __init__(self) -> None:
        self.healthy = True
        self.reason = "last successful poll 3 s ago"
        self.broken = False

    def __call__(self) -> tuple[bool, str]:
        if self.broken:
            raise RuntimeError("database is locked")
        return self.healthy, self.reason


@pytest.fixture
def verdict() -> Verdict:
    return Verdict()


@pytest.fixture
async def served(verdict: Verdict) -> AsyncIterator[tuple[Metrics, str]]:
    metrics = Metrics()
    server = MetricsServer(metrics, verdict, "127.0.0.1", 0)
    await server.start()
    assert server.port != 0
    try:
        yield metrics, f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def test_metrics_endpoint_serves_the_registry(
    served: tuple[Metrics, str], http: httpx.AsyncClient
) -> None:
    metrics, base = served
    metrics.action("notify", "delivered")
    response = await http.get(f"{base}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'dmbot_actions_total{kind="notify",outcome="delivered"} 1.0' in response.text
    assert response.content == metrics.render()


async def test_healthz_follows_the_health_verdict(
    served: tuple[Metrics, str], http: httpx.AsyncClient, verdict: Verdict
) -> None:
    _, base = served
    response = await http.get(f"{base}/healthz")
    assert (response.status_code, response.text) == (200, "healthy: last successful poll 3 s ago\n")
    verdict.healthy, verdict.reason = False, "the outbox is stuck"
    response = await http.get(f"{base}/healthz")
    assert (response.status_code, response.text) == (503, "unhealthy: the outbox is stuck\n")
    verdict.broken = True
    response = await http.get(f"{base}/healthz")
    assert response.status_code == 503
    assert "database is locked" in response.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 404),
        ("GET", "/metrics/extra", 404),
        ("GET", "/metrics?name[]=dmbot_polls_total", 200),
        ("HEAD", "/metrics", 200),
        ("POST", "/metrics", 405),
        ("DELETE", "/healthz", 405),
    ],
)
async def test_routes(
    served: tuple[Metrics, str], http: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    _, base = served
    response = await http.request(method, f"{base}{path}")
    assert response.status_code == status
    if method == "HEAD":
        assert response.content == b""


async def test_garbage_and_oversized_requests_get_400(served: tuple[Metrics, str]) -> None:
    _, base = served
    port = int(base.rsplit(":", 1)[1])
    for request in (b"NONSENSE\r\n\r\n", b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")


async def test_stop_closes_the_port(verdict: Verdict, http: httpx.AsyncClient) -> None:
    server = MetricsServer(Metrics(), verdict, "127.0.0.1", 0)
    await server.start()
    assert (await http.get(f"http://127.0.0.1:{server.port}/healthz")).status_code == 200
    await server.stop()
    await server.stop()  # twice is harmless
    with pytest.raises(httpx.ConnectError):
        await http.get(f"http://127.0.0.1:{server.port}/healthz")
