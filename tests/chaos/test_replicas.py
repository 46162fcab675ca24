"""Replicas under steady keep-alive load: replaced, scaled down and killed.

Figures asserted: a rolling replacement and a scale-down lose no request
(stopping replicas drain: ``Connection: close`` on each connection's next
answer, requests in flight finish); a SIGKILLed replica is replaced by the
watchdog, and the requests lost are at most one per client connected to it,
all at the moment of the kill.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from serving.replicas import Supervisor
from tests.chaos.load import Load

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

CLIENTS = 6


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    sup = Supervisor("serving.replicas:hello_app", min_replicas=1, max_replicas=4, interval_s=0.25)
    try:
        yield sup
    finally:
        sup.close()


def test_rolling_replacement_and_scale_down_lose_no_request(supervisor: Supervisor) -> None:
    supervisor.start(3)
    with Load(supervisor.url, clients=CLIENTS) as load:
        load.wait_for(200)
        replaced = list(supervisor.replicas)
        old = {r.pid for r in replaced}
        new = set(supervisor.rolling_restart())
        assert len(new) == 3 and not new & old
        assert [r.process.returncode for r in replaced] == [0, 0, 0]  # drained, then exit 0
        mark = time.monotonic()
        load.wait_for(200)
        assert load.pids(since=mark) <= new, "a stopped replica answered after the roll"
        supervisor.scale_to(1, reason="chaos")
        assert supervisor.replica_count == 1
        mark = time.monotonic()
        load.wait_for(200)
        assert load.pids(since=mark) == {supervisor.replicas[0].pid}
        supervisor.rolling_restart()
        load.wait_for(200)
    served = len(load.outcomes)
    assert load.failures == [], f"{len(load.failures)} of {served} failed: {load.failures[:3]}"
    print(
        f"\n2 rolling replacements and a scale-down 3 -> 1 under {CLIENTS} keep-alive clients: "
        f"0 failed of {served} requests"
    )
    for replica in supervisor.events:
        assert replica["action"] in {"scale", "roll"}


def test_sigkill_of_a_replica_is_replaced_and_loses_only_its_requests(supervisor: Supervisor) -> None:
    supervisor.start(2)
    supervisor.start_watchdog()
    with Load(supervisor.url, clients=CLIENTS) as load:
        load.wait_for(200)
        victim = supervisor.replicas[0]
        survivor = supervisor.replicas[1].pid
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = {r.pid for r in supervisor.replicas if r.alive}
            if len(pids) == 2 and victim.pid not in pids:
                break
            time.sleep(0.05)
        replaced_at = time.monotonic()
        fresh = pids - {survivor}
        assert len(pids) == 2 and victim.pid not in pids, supervisor.events
        load.wait_for(300)
    failures = load.failures
    after_kill = [o for o in load.outcomes if o.at >= killed_at]
    # each client connected to the killed replica loses its request in flight (or its next one on
    # that connection); nothing else is lost, and nothing fails once the connections moved
    assert len(failures) <= CLIENTS, failures
    assert all(o.at < killed_at + 2.0 for o in failures), [o.at - killed_at for o in failures]
    assert [o for o in after_kill if o.at > killed_at + 2.0 and not o.ok] == []
    replacements = [e for e in supervisor.events if e["action"] == "replace"]
    assert replacements and replacements[0]["pid"] == victim.pid and replacements[0]["exit"] == -9
    print(
        f"\nSIGKILL of 1 of 2 replicas under {CLIENTS} keep-alive clients: {len(failures)} failed of "
        f"{len(after_kill)} requests after the kill; replaced in {replaced_at - killed_at:.2f} s "
        f"(new pid {sorted(fresh)})"
    )
