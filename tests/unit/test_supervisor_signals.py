"""Review of the worker's supervisor: stops from outside that reach it at awkward moments (while it
judges a death, in the instant after a fork, just after it reaped its child), and a supervisor that
dies before its new child asked to die with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from callscribe import supervisor
from tests.unit.test_supervisor import _counting_child as _runs


def test_a_sigterm_while_a_death_is_judged_starts_no_new_child(tmp_path):
    """The judge reads the progress note from the store (a network call); the pod deleted meanwhile
    (the task's timeout, a drain) must not get a new child that loads the model and takes the job on."""
    run, count = _runs(tmp_path, deaths=1)

    def judge(sig: int, deaths: int) -> bool:
        os.kill(os.getpid(), signal.SIGTERM)  # the stop arrives during the store's answer
        return True

    rc = supervisor.supervise(run, judge, limit=4)
    assert count.read_text() == "1"
    assert rc == 128 + signal.SIGTERM  # a stop: no failure note (the stop's owner knows why)


def test_a_sigterm_that_reaches_a_new_child_before_its_own_handler_still_stops_it(tmp_path, monkeypatch):
    """A SIGTERM passed on in the instant after the fork finds the child still running the parent's
    handler, which only notes the stop in the child's copy of the supervisor: the stop is lost and the
    child runs the whole job until the grace period's SIGKILL."""
    run, count = _runs(tmp_path, deaths=0)
    fork = os.fork

    def fork_then_term() -> int:
        pid = fork()
        if pid == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # the supervisor's forward, before _child runs
        return pid

    monkeypatch.setattr(supervisor.os, "fork", fork_then_term)
    assert supervisor.supervise(run, lambda sig, deaths: True, limit=4) == 128 + signal.SIGTERM


def test_a_sigterm_just_after_the_child_was_reaped_keeps_its_exit_status(monkeypatch):
    """Forwarding to a child already reaped raises ProcessLookupError in the handler, out of the
    supervisor: a worker that wrote its shard (0) would end with a traceback (1)."""
    wait = supervisor._wait

    def wait_then_term(pid: int) -> int:
        status = wait(pid)
        os.kill(os.getpid(), signal.SIGTERM)  # killpg's SIGTERM, as the child had just finished
        return status

    monkeypatch.setattr(supervisor, "_wait", wait_then_term)
    assert supervisor.supervise(lambda: 0, lambda sig, deaths: True, limit=4) == 0


ORPHAN = textwrap.dedent("""
    import os, signal, sys, time
    from callscribe import supervisor

    marker = sys.argv[1]
    fork = os.fork

    def slow_child_fork():
        parent = os.getpid()
        pid = fork()
        if pid == 0:
            # The child not yet scheduled when its parent dies: it goes on only once orphaned, however
            # slowly a loaded machine runs the parent's kill.
            deadline = time.monotonic() + 20
            while os.getppid() == parent and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            os.kill(os.getpid(), signal.SIGKILL)  # the supervisor killed (its own parent died)
        return pid

    os.fork = slow_child_fork

    def run():
        open(marker, "w").write(str(os.getppid()))
        return 0

    sys.exit(supervisor.supervise(run, lambda sig, deaths: True, limit=4))
""")


def test_a_child_whose_supervisor_died_before_it_started_does_not_run_the_job(tmp_path):
    """die_with_parent checks that the parent is still the one it means; asking os.getppid() in the
    child for that parent makes the check pass for an orphan, which then runs the job unsupervised."""
    marker = tmp_path / "ran"
    proc = subprocess.run([sys.executable, "-c", ORPHAN, str(marker)], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    time.sleep(1.5)  # the orphan's wait, and a job it must not run
    assert not marker.exists(), f"an orphan ran the job (its parent: {marker.read_text()})"


CTRL_C = textwrap.dedent("""
    import os, sys, time
    from callscribe import supervisor

    def run():
        try:
            print("child", flush=True)
            time.sleep(60)
        except KeyboardInterrupt:
            time.sleep(0.5)  # the clean-up: the progress note cleared in the store
            print("child cleaned up", flush=True)
            return 130
        return 0

    sys.exit(supervisor.supervise(run, lambda sig, deaths: True, limit=4))
""")


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT at its default, as a terminal's foreground job has it: tests started as a shell's
    background job inherit it ignored (POSIX, without job control), and Python keeps it so."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_lets_the_child_clean_up_and_the_supervisor_waits_for_it():
    """Ctrl-C signals the terminal's process group: the supervisor must not leave on a KeyboardInterrupt
    of its own and take its child (die_with_parent) with it before the child's clean-up is done."""
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                            preexec_fn=_ctrl_c_as_in_a_terminal)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("child")
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert "child cleaned up" in out, err
    assert proc.returncode == 130, err


def test_a_stop_forwarded_while_the_child_starts_ends_it(tmp_path, monkeypatch):
    """Not simulated: a SIGTERM sent the moment fork returns (the supervisor's own 'a SIGTERM between
    the fork and here' kill) lands before the child has put its SIGTERM handling in place in most
    runs; each must end the child, not be lost."""
    fork = os.fork
    sent: list[int] = []

    def fork_stopped() -> int:
        pid = fork()
        if pid and not sent:
            sent.append(pid)
            os.kill(pid, signal.SIGTERM)
        return pid

    monkeypatch.setattr(supervisor.os, "fork", fork_stopped)
    for _ in range(10):
        sent.clear()
        run, _count = _runs(tmp_path, deaths=0)
        assert supervisor.supervise(run, lambda sig, deaths: True, limit=4) == 128 + signal.SIGTERM


def test_an_inherited_ignored_sigchld_does_not_lose_the_childs_exit_status():
    """SIGCHLD ignored survives exec: a worker started so would have its children reaped by the kernel,
    and waitpid would find no status: the shard written, the worker failing anyway."""
    script = ("import signal, sys\nsignal.signal(signal.SIGCHLD, signal.SIG_IGN)\nfrom callscribe import supervisor\n"
              "sys.exit(supervisor.supervise(lambda: 3, lambda sig, deaths: True, limit=4))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 3, proc.stderr
