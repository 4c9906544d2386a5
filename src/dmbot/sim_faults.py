"""What goes wrong in front of the API: injected faults and whole outages.

A fault spoils the next matching requests (an error answer, a dropped connection, latency, a
half body); an outage makes every API request hang or drop until `resume()`. The plan has a
lock of its own: nothing else reads its state, and every API request passes through it.
`Simulator` closes it on `stop()`, releasing every hung request, and opens it on `start()`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal, get_args

FaultKind = Literal[
    "status_500", "status_503", "status_502_html", "rate_limit", "latency", "drop", "malformed"
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
OutageMode = Literal["hang", "drop"]


@dataclass(kw_only=True)
class Fault:
    kind: FaultKind
    remaining: int
    path: str | None  # prefix of the request path; None: every API path
    method: str | None
    seconds: float

    def matches(self, method: str, path: str) -> bool:
        path = path.rstrip("/")
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or path == self.path or path.startswith(self.path + "/")


class FaultPlan:
    """Pending faults, oldest first, and the outage in force. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answering = threading.Condition(self._lock)  # signalled on resume() and close()
        self._faults: list[Fault] = []
        self._outage: OutageMode | None = None
        self._closed = False

    def inject_fault(
        self,
        kind: FaultKind,
        *,
        count: int = 1,
        path: str | None = "/api/v1/conversations",
        method: str | None = None,
        seconds: float = 0.5,
    ) -> None:
        """Spoil the next `count` API requests whose path starts with `path` (None: any).

        "drop" closes the connection unanswered, "malformed" answers 200 with half the body,
        "latency" waits `seconds` of real time then answers, "rate_limit" answers 429.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        fault = Fault(kind=kind, remaining=count, path=path, method=method, seconds=seconds)
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first pending fault matching a request, used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
            return None

    def stop_answering(self, mode: OutageMode = "hang") -> None:
        """Make every API request hang (until `resume()` or `stop()`) or drop its connection."""
        if mode not in get_args(OutageMode):
            raise ValueError(f"unknown mode {mode!r}: 'hang' or 'drop'")
        with self._lock:
            self._outage = mode

    def resume(self) -> None:
        with self._answering:
            self._outage = None
            self._answering.notify_all()

    def wait_while_hanging(self) -> OutageMode | None:
        """Block while the outage is "hang"; then the outage still in force ("drop") or None."""
        with self._answering:
            while self._outage == "hang" and not self._closed:
                self._answering.wait()
            return self._outage

    def open(self) -> None:
        """Serving (again): an outage hangs requests once more."""
        with self._lock:
            self._closed = False

    def close(self) -> None:
        """Release every hung request, and every one until `open()`: the simulator stops."""
        with self._answering:
            self._closed = True
            self._answering.notify_all()
