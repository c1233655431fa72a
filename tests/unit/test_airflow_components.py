"""The embedded Airflow's components (`callscribe ui`, the scheduler tests) are stopped with what
they started: a scheduler's LocalExecutor workers outlived it, idle, after every suite."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from callscribe.dev import services

# A component that starts a worker of its own and ignores SIGTERM, as a scheduler busy shutting
# down may: the worker's pid goes to stdout.
COMPONENT = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
    "print(w.pid, flush=True)\n"
    "time.sleep(300)\n"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waits for its reaper: gone for this test
        return f.read().split(")")[-1].split()[0] != "Z"


def test_stopping_a_component_stops_the_workers_it_started():
    proc = services.start_component([sys.executable, "-c", COMPONENT], stdout=subprocess.PIPE)
    worker = int(proc.stdout.readline())
    assert _alive(worker)
    services.airflow_down([proc], timeout=1)
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "the component's worker outlived it"
    assert _alive(os.getpid())  # the group signalled was the component's, not this one's


def test_a_process_started_otherwise_is_stopped_alone():
    """One that shares its starter's group (a plain Popen) gets the signal itself: its group is this
    test's, which stopping it must not touch (nor wait for it for ever)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    services.airflow_down([proc], timeout=5)
    assert proc.returncode is not None
    assert _alive(os.getpid())
