"""The worker's supervisor with real forked children: exit statuses passed through, deaths
outlived while the judge allows and the limit lasts, SIGTERM passed on and never outlived."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from callscribe import supervisor


def _counting_child(tmp_path: Path, deaths: int, sig: int = signal.SIGKILL):
    """A child that dies by ``sig`` on its first ``deaths`` runs, then returns 0; runs counted in a file."""
    count = tmp_path / "runs"
    count.write_text("0")

    def run() -> int:
        n = int(count.read_text()) + 1
        count.write_text(str(n))
        if n <= deaths:
            # Its default action, whatever this process inherited: a shell's background job starts
            # with SIGINT and SIGQUIT ignored (POSIX, without job control), and so would the child.
            if sig != signal.SIGKILL:  # whose action cannot be changed
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            time.sleep(5)
        return 0

    return run, count


@pytest.mark.parametrize("rc", [0, 1, 3])
def test_a_childs_exit_status_is_the_supervisors(rc):
    assert supervisor.supervise(lambda: rc, lambda sig, deaths: True, limit=4) == rc


def test_an_exception_in_the_child_is_a_failure_not_a_second_supervisor():
    def boom() -> int:
        raise RuntimeError("scripted")

    assert supervisor.supervise(boom, lambda sig, deaths: True, limit=4) == 1


def test_deaths_are_outlived_while_the_judge_says_so(tmp_path):
    run, count = _counting_child(tmp_path, deaths=2)
    asked = []
    rc = supervisor.supervise(run, lambda sig, deaths: asked.append((sig, deaths)) or True, limit=4)
    assert rc == 0 and count.read_text() == "3"
    assert asked == [(signal.SIGKILL, 0), (signal.SIGKILL, 1)]


def test_past_the_limit_a_death_ends_it(tmp_path):
    run, count = _counting_child(tmp_path, deaths=5)
    assert supervisor.supervise(run, lambda sig, deaths: True, limit=2) == 128 + signal.SIGKILL
    assert count.read_text() == "3"  # the first run and two respawns


def test_a_death_the_judge_refuses_ends_it(tmp_path):
    run, count = _counting_child(tmp_path, deaths=1, sig=signal.SIGQUIT)
    assert supervisor.supervise(run, lambda sig, deaths: False, limit=4) == 128 + signal.SIGQUIT
    assert count.read_text() == "1"


def test_a_child_ended_by_sigterm_is_not_started_again(tmp_path):
    run, count = _counting_child(tmp_path, deaths=1, sig=signal.SIGTERM)
    assert supervisor.supervise(run, lambda sig, deaths: True, limit=4) == 128 + signal.SIGTERM
    assert count.read_text() == "1"


SUPERVISED = textwrap.dedent("""
    import os, signal, sys, time
    from callscribe import supervisor

    def run():
        def stop(signum, frame):
            print("child stopped", flush=True)
            os._exit(128 + signum)
        signal.signal(signal.SIGTERM, stop)
        print("child", os.getpid(), flush=True)
        time.sleep(60)
        return 0

    sys.exit(supervisor.supervise(run, lambda sig, deaths: True, limit=4))
""")


def test_a_sigterm_to_the_supervisor_reaches_the_child_and_ends_it():
    """Kubernetes stops a pod with SIGTERM to its PID 1, the supervisor: the child must hear it."""
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISED], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("child "), line
    child = int(line.split()[1])
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "child stopped" in out
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # reaped, not left behind


@pytest.mark.parametrize(("raw", "want"), [("", 4), ("0", 0), (" 7 ", 7)])
def test_respawns_from_the_environment(monkeypatch, raw, want):
    monkeypatch.setenv("CALLSCRIBE_WORKER_RESPAWNS", raw)
    assert supervisor.respawns() == want


@pytest.mark.parametrize("raw", ["-1", "many"])
def test_a_bad_respawns_setting_is_an_error(monkeypatch, raw):
    monkeypatch.setenv("CALLSCRIBE_WORKER_RESPAWNS", raw)
    with pytest.raises(ValueError, match="CALLSCRIBE_WORKER_RESPAWNS"):
        supervisor.respawns()


def test_a_child_whose_engine_broke_is_started_again_while_the_judge_says_so(tmp_path):
    """Exit status ENGINE_BROKE (the note names the chunks its engine held): a new process goes on."""
    count = tmp_path / "runs"
    count.write_text("0")

    def run() -> int:
        n = int(count.read_text()) + 1
        count.write_text(str(n))
        return supervisor.ENGINE_BROKE if n == 1 else 0

    asked = []
    assert supervisor.supervise(run, lambda sig, deaths: asked.append((sig, deaths)) or True, limit=4) == 0
    assert count.read_text() == "2" and asked == [(0, 0)]
    count.write_text("0")
    assert supervisor.supervise(run, lambda sig, deaths: False, limit=4) == supervisor.ENGINE_BROKE
    assert count.read_text() == "1"


def test_a_child_whose_engine_broke_while_the_supervisor_was_stopped_ends_as_stopped():
    """A SIGTERM to the supervisor (the pod deleted) while the child ends with ENGINE_BROKE: no new
    child, and the try ends as stopped (whoever stopped it knows why), not as a failed job."""
    def run() -> int:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # already on its way out when the stop comes
        os.kill(os.getppid(), signal.SIGTERM)  # the supervisor's handler marks it stopped
        time.sleep(0.5)
        return supervisor.ENGINE_BROKE

    assert supervisor.supervise(run, lambda sig, deaths: True, limit=4) == 128 + signal.SIGTERM
