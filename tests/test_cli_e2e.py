"""The real CLI in a subprocess against the simulator in another subprocess, as users run it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import MARK_ALL_READ

PROBE = "/api/v1/conversations/0/read"  # how dmbot learns it has write:conversations
SIM_TOKEN = "e2e-token-7c1d0a"


class SimProcess:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def control(self, method: str, route: str, **body: Any) -> Any:
        response = self.http.request(method, f"/_sim/{route}", json=body or None)
        response.raise_for_status()
        return response.json()

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", "requests")
        return result

    def conversations(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", "conversations")
        return result


@pytest.fixture
def sim_process() -> Iterator[SimProcess]:
    process = subprocess.Popen(
        [sys.executable, "-m", "dmbot.sim", "--port", "0", "--token", SIM_TOKEN,
         "--api-limit", "5000", "--paging-limit", "5000"],
        stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    assert match, line
    sim = SimProcess(process, match.group(1))
    try:
        yield sim
    finally:
        sim.http.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        process.stdout.close()


def dmbot_env(sim: SimProcess | None, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMBOT_")}
    rules = tmp_path / "rules.yaml"
    if not rules.exists():
        rules.write_text(MARK_ALL_READ, encoding="utf-8")
    env.update(
        DMBOT_INSTANCE_URL=sim.url if sim else "http://127.0.0.1:9",
        DMBOT_ACCESS_TOKEN=SIM_TOKEN,
        DMBOT_RULES_FILE=str(rules),
        DMBOT_DATA_DIR=str(tmp_path / "data"),
        DMBOT_LOG_FORMAT="json",
        DMBOT_POLL_INTERVAL="10",
    )
    env.update(extra)
    return env


def dmbot(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dmbot.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def is_read(request: dict[str, Any]) -> bool:
    return bool(request["path"].endswith("/read") and request["path"] != PROBE)


def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize(
    "token",
    ["wrong-token-d41d8cd98f", ""],
)
def test_a_wrong_or_missing_token_exits_2_naming_the_setting(
    sim_process: SimProcess, tmp_path: Path, token: str
) -> None:
    env = dmbot_env(sim_process, tmp_path, DMBOT_ACCESS_TOKEN=token)
    result = dmbot("run", env=env)
    assert result.returncode == 2
    assert "DMBOT_ACCESS_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    if token:
        assert token not in result.stdout + result.stderr


def test_bad_settings_exit_2_with_one_sentence(tmp_path: Path) -> None:
    env = dmbot_env(None, tmp_path, DMBOT_POLL_INTERVAL="3")
    result = dmbot("run", "--once", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("dmbot: error: DMBOT_POLL_INTERVAL")


def test_an_unreachable_instance_on_first_start_exits_2(tmp_path: Path) -> None:
    env = dmbot_env(None, tmp_path)
    result = dmbot("run", "--once", env=env)
    assert result.returncode == 2
    assert "DMBOT_INSTANCE_URL: cannot reach" in result.stderr


def test_run_once_then_status(sim_process: SimProcess, tmp_path: Path) -> None:
    for i in range(3):
        sim_process.control("POST", "accounts", username=f"u{i}", domain="remote.example")
        sim_process.control("POST", "dms", author=f"u{i}@remote.example", to=["me"], text="hi")
    env = dmbot_env(sim_process, tmp_path)
    result = dmbot("run", "--once", env=env)
    assert result.returncode == 0, result.stderr
    assert all(not c["unread"] for c in sim_process.conversations())
    status = dmbot("status", env=env)
    assert status.returncode == 0
    assert "3 pending" not in status.stdout
    assert "mark_read" in status.stdout
    assert SIM_TOKEN not in result.stderr + status.stdout


def test_kill_9_in_the_middle_of_a_catch_up_loses_and_repeats_nothing(
    sim_process: SimProcess, tmp_path: Path
) -> None:
    sim = sim_process
    env = dmbot_env(sim, tmp_path)
    sim.control("POST", "accounts", username="crowd", domain="remote.example")

    def send(count: int) -> None:
        for _ in range(count):
            sim.control("POST", "dms", author="crowd@remote.example", to=["me"], thread="new")

    def unread() -> int:
        return sum(c["unread"] for c in sim.conversations())

    def list_requests() -> int:
        return sum(r["path"] == "/api/v1/conversations" for r in sim.requests())

    daemon = subprocess.Popen(
        [sys.executable, "-m", "dmbot.cli", "run"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: list_requests() >= 1, what="the first poll")
        send(60)
        daemon.send_signal(signal.SIGHUP)  # wakes the loop at once
        wait_for(lambda: unread() == 0, what="the first 60 to be read")
        first_reads = {r["path"] for r in sim.requests() if is_read(r)}
        assert len(first_reads) == 60

        send(400)
        sim.control("POST", "faults", kind="latency", count=40, seconds=0.1,
                    path="/api/v1/conversations")
        before = list_requests()
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: list_requests() >= before + 4, what="the catch-up to be under way")
        daemon.kill()
        daemon.wait(timeout=10)
        reads_at_kill = sum(is_read(r) for r in sim.requests())
        assert reads_at_kill == 60, "the kill came after the catch-up had finished"
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=10)

    restarted = subprocess.Popen(
        [sys.executable, "-m", "dmbot.cli", "run"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: unread() == 0, timeout=120, what="everything to be read")
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=20) == 0
    reads: dict[str, int] = {}
    for request in sim.requests():
        if is_read(request):
            reads[request["path"]] = reads.get(request["path"], 0) + 1
    assert len(reads) == 460
    assert set(reads.values()) == {1}


def test_sigterm_exits_0_and_logs_json(sim_process: SimProcess, tmp_path: Path) -> None:
    env = dmbot_env(sim_process, tmp_path)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "dmbot.cli", "run"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    wait_for(lambda: any(r["path"] == "/api/v1/conversations" for r in sim_process.requests()),
             what="the first poll")
    daemon.send_signal(signal.SIGTERM)
    out, err = daemon.communicate(timeout=20)
    assert daemon.returncode == 0
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "daemon.started" in events
    assert "daemon.stopped" in events
    assert SIM_TOKEN not in out + err
