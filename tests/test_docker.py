"""The image as users run it: a real Docker engine, the simulator and a receiver on loopback.

Containers run with `--network host`, so they reach the simulator and the JSON receiver this
process serves on 127.0.0.1. The token comes from a mounted secret file, the rules from a
read-only `/config` directory, the state from a named volume. Waits poll `docker inspect` or
the simulator with a deadline; nothing sleeps to synchronise.

Skipped, with the reason, when no engine answers `docker info` (see `.ci/docker-up`).
Run alone with `pytest -m docker`; leave out with `pytest -m "not docker"`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dmbot.sim import SimAccount, Simulator

from conftest import MARK_ALL_READ
from receivers import JsonReceiver

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "dmbot:test"
TOKEN = "docker-test-token-3e9b1f"  # the simulator's test token
INTERVAL = 10  # DMBOT_POLL_INTERVAL's minimum: health turns after 3 intervals, 30 s
DOCKER = shutil.which("docker")


def _engine_problem() -> str | None:
    where = f"DOCKER_HOST={os.environ['DOCKER_HOST']}" if os.environ.get("DOCKER_HOST") else (
        "the default socket (DOCKER_HOST is not set)"
    )
    if DOCKER is None:
        return "no docker client on PATH; start an engine with eval \"$(.ci/docker-up)\""
    try:
        info = subprocess.run(
            [DOCKER, "info"], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return f"`docker info` did not answer within 30 s at {where}"
    if info.returncode != 0:
        lines = (info.stdout + info.stderr).splitlines()
        detail = next((line for line in lines if "daemon" in line.lower()), "docker info failed")
        return f"no Docker engine reachable at {where}: {detail.strip()}"
    return None


_problem = _engine_problem()
if _problem is not None:
    pytest.skip(f"container tests need a Docker engine: {_problem}", allow_module_level=True)


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    assert DOCKER is not None
    result = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str] | None = None
) -> float:
    """Poll `predicate` until it holds; the seconds it took. On timeout, say what and show logs."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            tail = "\n".join(logs().splitlines()[-25:]) if logs else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(0.2)
    return time.monotonic() - started


@dataclass
class Container:
    id: str

    def inspect(self, template: str) -> str:
        return docker("inspect", "--format", template, self.id).stdout.strip()

    def health(self) -> str:
        return self.inspect("{{if .State.Health}}{{.State.Health.Status}}{{end}}")

    def last_health_output(self) -> str:
        log: list[dict[str, Any]] = json.loads(self.inspect("{{json .State.Health.Log}}"))
        return str(log[-1]["Output"]).strip() if log else ""

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def logs(self) -> str:
        result = docker("logs", self.id, check=False)
        return result.stdout + result.stderr

    def events(self) -> list[dict[str, Any]]:
        """dmbot's JSON log lines."""
        found = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def exec(self, *args: str) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.id, *args, check=False)

    def wait_health(self, status: str, timeout: float) -> float:
        return wait_until(lambda: self.health() == status, timeout, f"health {status}", self.logs)


@dataclass
class Dock:
    """Starts containers of the test image and removes them, and their volumes, afterwards."""

    image: str
    workdir: Path
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def volume(self) -> str:
        name = f"dmbot-test-{uuid.uuid4().hex[:10]}"
        docker("volume", "create", name)
        self.volumes.append(name)
        return name

    def config(self, rules: str) -> Path:
        """The directory mounted at /config, holding rules.yaml."""
        config = self.workdir / "config"
        config.mkdir(exist_ok=True)
        config.chmod(0o755)
        write_rules(config, rules)
        return config

    def run(
        self, *, url: str, config: Path, data: str, read_only: bool = False, **env: str
    ) -> Container:
        secret = self.workdir / "token"
        secret.write_text(TOKEN + "\n", encoding="utf-8")
        secret.chmod(0o644)
        env = {
            "DMBOT_INSTANCE_URL": url,
            "DMBOT_ACCESS_TOKEN_FILE": "/run/secrets/dmbot_token",
            "DMBOT_POLL_INTERVAL": str(INTERVAL),
            **env,
        }
        args = ["run", "--detach", "--network", "host", "--label", "dmbot-test=1"]
        args += ["--health-interval", "2s", "--health-timeout", "10s"]
        args += ["--health-retries", "1", "--health-start-period", "1s"]
        args += ["-v", f"{secret}:/run/secrets/dmbot_token:ro", "-v", f"{config}:/config:ro"]
        args += ["-v", f"{data}:/data"]
        args += ["--read-only"] if read_only else []
        for name, value in env.items():
            args += ["-e", f"{name}={value}"]
        container = Container(docker(*args, self.image).stdout.strip())
        self.containers.append(container.id)
        return container

    def close(self) -> None:
        for container in self.containers:
            docker("rm", "--force", "--volumes", container, check=False)
        for volume in self.volumes:
            docker("volume", "rm", "--force", volume, check=False)


def write_rules(config: Path, rules: str) -> None:
    """Save as editors do: a new file renamed over the old one (a new inode)."""
    new = config / ".rules.yaml.new"
    new.write_text(rules, encoding="utf-8")
    new.chmod(0o644)
    new.replace(config / "rules.yaml")


@pytest.fixture(scope="session")
def image() -> str:
    build = docker("build", "--network", "host", "--tag", IMAGE, str(ROOT), timeout=900)
    assert build.returncode == 0
    return IMAGE


@pytest.fixture
def dock(image: str, tmp_path: Path) -> Iterator[Dock]:
    dock = Dock(image, tmp_path)
    try:
        yield dock
    finally:
        dock.close()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    # Generous API limits: the catch-up test marks 2,000 conversations read in one go.
    simulator = Simulator(api_limit=100_000, paging_limit=100_000)
    simulator.add_token(TOKEN, scopes=("read", "write", "follow"))
    with simulator.serve():
        yield simulator
        simulator.resume()


@pytest.fixture
def receiver() -> Iterator[JsonReceiver]:
    with JsonReceiver() as hook:
        yield hook


READ = re.compile(r"/api/v1/conversations/(\d+)/read")


def reads(sim: Simulator) -> dict[str, int]:
    """How many times the server was asked to mark each conversation read."""
    counts: dict[str, int] = {}
    for request in sim.requests:
        match = READ.fullmatch(request.path)
        if request.method == "POST" and match and request.status == 200:
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


def conversation_of(sim: Simulator, account: SimAccount) -> str | None:
    for view in sim.conversations(sim.owner):
        if view.participants == (account.acct,):
            return view.id
    return None


# -- the image -------------------------------------------------------------------------


def test_image_runs_as_a_fixed_non_root_user_with_healthcheck_and_labels(image: str) -> None:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["dmbot"]
    assert config["Cmd"] == ["run"]
    assert config["StopSignal"] == "SIGTERM"
    assert config["Healthcheck"]["Test"] == ["CMD", "dmbot", "healthcheck"]
    assert "/data" in config["Volumes"]
    assert "DMBOT_DATA_DIR=/data" in config["Env"]
    assert "DMBOT_RULES_FILE=/config/rules.yaml" in config["Env"]
    assert config["Labels"]["org.opencontainers.image.title"] == "dmbot"
    assert config["Labels"]["org.opencontainers.image.licenses"] == "MIT"
    version = docker("run", "--rm", "--network", "none", image, "--version")
    assert version.stdout.strip().startswith("dmbot ")


# -- behaviour against the simulator ----------------------------------------------------


def rules_v1(receiver: JsonReceiver) -> str:
    return f"""\
version: 1
notifiers:
  hook: "{receiver.apprise_url('/notify')}"
lists:
  blocked: [spam.example]
rules:
  - name: blocked-domains
    if: {{participants.domain: {{in: blocked}}}}
    do: [delete]
    stop: true
  - name: tell-me
    if: {{unread: true}}
    do:
      - notify: {{to: hook, title: "DM from @{{sender.acct}}", body: "{{text}}"}}
"""


def rules_v2(receiver: JsonReceiver) -> str:
    """v1 plus: newsletters are marked read, not notified."""
    return rules_v1(receiver).replace(
        "  - name: tell-me\n",
        "  - name: newsletters\n"
        "    if: {text: {contains: newsletter}}\n"
        "    do: [mark_read]\n"
        "    stop: true\n"
        "  - name: tell-me\n",
    )


def test_notifies_deletes_turns_healthy_and_reloads_edited_rules(
    dock: Dock, sim: Simulator, receiver: JsonReceiver
) -> None:
    alice = sim.add_account("alice", "friends.example", display_name="Alice")
    spammer = sim.add_account("spammer", "spam.example")
    sim.send_dm(spammer, to=[sim.owner], text="cheap pills")
    sim.send_dm(alice, to=[sim.owner], text="hello from alice")
    spam_conversation = conversation_of(sim, spammer)
    alice_conversation = conversation_of(sim, alice)
    config = dock.config(rules_v1(receiver))

    # Read-only root filesystem: only the /data volume is writable.
    box = dock.run(url=sim.base_url, config=config, data=dock.volume(), read_only=True)

    [note] = receiver.wait_for(1, timeout=60)
    assert note.json["title"] == "DM from @alice@friends.example"
    assert "hello from alice" in note.json["message"]
    wait_until(lambda: conversation_of(sim, spammer) is None, 30, "the spam conversation deleted")
    deletes = [r for r in sim.requests if r.method == "DELETE"]
    assert [r.path for r in deletes] == [f"/api/v1/conversations/{spam_conversation}"]
    box.wait_health("healthy", timeout=30)

    assert box.exec("id", "-u").stdout.strip() == "10001"
    assert box.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
    assert box.exec("touch", "/opt/venv/x").returncode != 0
    assert box.exec("test", "-s", "/data/dmbot.sqlite3").returncode == 0

    # Edit the mounted rules; the running container picks the edit up at its next poll.
    write_rules(config, rules_v2(receiver))
    sim.send_dm(alice, to=[sim.owner], text="the weekly newsletter")
    wait_until(
        lambda: reads(sim).get(alice_conversation or "") == 1,
        3 * INTERVAL, "the newsletter marked read by the edited rules", box.logs,
    )
    assert len(receiver.requests) == 1  # notify would have run before mark_read
    assert any(e.get("event") == "rules.reloaded" for e in box.events())
    assert box.running()
    assert box.inspect("{{.RestartCount}}") == "0"


def test_turns_unhealthy_when_the_instance_stops_answering_and_recovers(
    dock: Dock, sim: Simulator, receiver: JsonReceiver
) -> None:
    sim.send_dm(sim.add_account("bob"), to=[sim.owner], text="hi")
    box = dock.run(url=sim.base_url, config=dock.config(rules_v1(receiver)), data=dock.volume())
    box.wait_health("healthy", timeout=60)

    sim.stop_answering("hang")
    took = box.wait_health("unhealthy", timeout=3 * INTERVAL + 25)
    # The last success came at most one interval (plus jitter) before the outage began.
    assert took >= 2 * INTERVAL - 2
    assert "last successful poll" in box.last_health_output()

    sim.resume()
    box.wait_health("healthy", timeout=4 * INTERVAL)
    assert box.running()


def test_docker_stop_mid_catch_up_exits_0_and_a_new_container_finishes_it(
    dock: Dock, sim: Simulator
) -> None:
    sender = sim.add_account("digest", "lists.example")
    sim.send_dm(sender, to=[sim.owner], text="before", thread="new")
    config = dock.config(MARK_ALL_READ)
    data = dock.volume()
    first = dock.run(url=sim.base_url, config=config, data=data)
    wait_until(lambda: len(reads(sim)) == 1, 60, "the first poll", first.logs)

    for number in range(2000):
        sim.send_dm(sender, to=[sim.owner], text=f"issue {number}", thread="new")
    total = len(sim.conversations(sim.owner))
    assert total == 2001
    # 0.2 s per page keeps the catch-up (51 pages) in progress long enough to interrupt.
    sim.inject_fault("latency", count=200, seconds=0.2, method="GET")
    listed_before = sum(1 for r in sim.requests if r.method == "GET")
    docker("kill", "--signal", "HUP", first.id)  # SIGHUP: poll now
    wait_until(
        lambda: sum(1 for r in sim.requests if r.method == "GET") >= listed_before + 5,
        3 * INTERVAL, "the catch-up to be under way", first.logs,
    )

    started = time.monotonic()
    docker("stop", "--time", "10", first.id, timeout=30)
    stopped_in = time.monotonic() - started
    assert first.inspect("{{.State.ExitCode}}") == "0", first.logs()
    assert stopped_in < 10
    done_by_first = reads(sim)
    assert len(done_by_first) < total, "the stop came too late to interrupt the catch-up"
    assert any(e.get("event") == "daemon.stopped" for e in first.events())

    sim.clear_faults()
    second = dock.run(url=sim.base_url, config=config, data=data)
    wait_until(lambda: len(reads(sim)) == total, 120, "every conversation read", second.logs)
    counts = reads(sim)
    assert set(counts) == {view.id for view in sim.conversations(sim.owner)}
    assert set(counts.values()) == {1}, {c: n for c, n in counts.items() if n != 1}
    status = second.exec("dmbot", "status")
    assert status.returncode == 0, status.stderr
    assert "outbox:               0 pending, 0 failed" in status.stdout
