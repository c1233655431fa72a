"""One job, run in a child process that is started again when it dies.

A chunk that kills the worker's process (a native crash in the engine, the kernel's OOM killer)
used to cost the job's task one of its tries per death. The worker now runs the job in a forked
child and, when the child is killed by a signal while it held chunks in the engine, starts a new
one in the same pod: the new child reads the progress note the dead one left (worker.py) and goes
on. Each death in the engine makes suspects or pins one killer, so a few respawns cover a job with
several killer chunks, at the cost of loading the model again (seconds with a warm compile cache),
not of a pod rescheduled by the task's retry.

The parent does no work of its own: it imports no engine and starts no Python thread before it
forks (a CUDA context or a thread holding a lock does not survive a fork; the native pools numpy
and pyarrow start handle fork themselves), waits, forwards SIGTERM to the child, and reaps
whatever the child leaves behind (in a pod it is PID 1).

Where the kernel's OOM killer ends the whole container, as the kubelet asks it to on cgroup v2
from Kubernetes 1.28 (memory.oom.group), an out-of-memory death takes the parent too: there only
native crashes are outlived in the pod, and an OOM death costs a try of the task, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable

log = logging.getLogger("callscribe.worker")

# Deaths with chunks in the engine that one worker process outlives; the task's tries come on top.
DEFAULT_RESPAWNS = 4
# A child's exit status for "my engine broke for good (a device-side assert leaves a CUDA context
# unusable), and the progress note names the chunks it held": a new process, with a new device
# context, goes on from the note as after a death.
ENGINE_BROKE = 75


def respawns() -> int:
    """CALLSCRIBE_WORKER_RESPAWNS (0: every death ends the try, as before respawns)."""
    raw = os.environ.get("CALLSCRIBE_WORKER_RESPAWNS", "").strip() or str(DEFAULT_RESPAWNS)
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"CALLSCRIBE_WORKER_RESPAWNS must be a whole number >= 0, not {raw!r}")
    return value


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to kill this process when its parent dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return  # not Linux: the parent's own clean-up still stops its children
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def supervise(run_once: Callable[[], int], may_respawn: Callable[[int, int], bool], limit: int) -> int:
    """``run_once`` in a forked child; its return value is the exit status.

    A child killed by a signal, or one that exits with ``ENGINE_BROKE``, is started again while
    ``may_respawn(signal, deaths so far)`` says so (the signal is 0 for ``ENGINE_BROKE``), ``limit``
    times at most. A SIGTERM to this process is passed on to the child, and no new child follows
    it. Returns the last child's exit status, 128 + the signal for a death.
    """
    child = 0
    stopped = False
    parent = os.getpid()

    def forward(signum: int, frame: object) -> None:
        nonlocal stopped
        stopped = True
        if child:
            with contextlib.suppress(ProcessLookupError):  # reaped a moment ago: its status is in hand
                os.kill(child, signum)

    previous = signal.signal(signal.SIGTERM, forward)
    # Ctrl-C reaches the child too (the terminal signals the whole group): it stops, and this process
    # waits for it, or the child would be killed with this one's exit in the midst of its clean-up.
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Inherited as ignored (exec keeps that), the kernel would reap the child itself, and its exit
    # status would be lost to waitpid.
    previous_chld = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        deaths = 0
        while True:
            sys.stdout.flush()
            sys.stderr.flush()  # or the child writes out the parent's buffer again
            # Held back over the fork: in the child, until _child puts SIG_DFL in place, a SIGTERM would
            # run this process's handler, which stops nothing there.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            try:
                pid = os.fork()
                if pid == 0:
                    _child(run_once, parent, previous_int)
                child = pid
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            if stopped:  # a SIGTERM before the fork
                os.kill(pid, signal.SIGTERM)
            status = _wait(pid)
            child = 0
            if os.WIFEXITED(status):
                rc = os.WEXITSTATUS(status)
                if rc == ENGINE_BROKE and stopped:  # stopped from outside meanwhile: that is the try's end
                    return 128 + signal.SIGTERM
                if rc != ENGINE_BROKE or deaths >= limit or not may_respawn(0, deaths):
                    return rc
                what = "the worker process's engine broke for good"
            else:
                sig = os.WTERMSIG(status)
                if stopped or sig == signal.SIGTERM or deaths >= limit or not may_respawn(sig, deaths):
                    return 128 + sig
                what = f"the worker process died ({signal_name(sig)})"
            if stopped:  # a SIGTERM while the death was judged (the note is read from the store): a stop
                return 128 + signal.SIGTERM
            deaths += 1
            log.warning("%s with chunks in the engine; the job goes on in a new one (respawn %d of at most %d)",
                        what, deaths, limit)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for signum, handler in ((signal.SIGINT, previous_int), (signal.SIGCHLD, previous_chld)):
            if handler is not None:  # None: put in place outside Python, not Python's to put back
                signal.signal(signum, handler)


def _child(run_once: Callable[[], int], parent: int, on_int: signal.Handlers | Callable | None) -> None:
    """The forked child: run, then leave without returning into the parent's loop."""
    rc = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # until run_once puts its own handler in place
        signal.signal(signal.SIGINT, signal.default_int_handler if on_int is None else on_int)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # one sent meanwhile ends it now
        # The pid from before the fork: os.getppid() here would name whoever adopted an orphan.
        die_with_parent(parent)
        rc = run_once()
    except BaseException:  # noqa: BLE001 - whatever it was, the child must not go on as the parent
        log.exception("the worker process failed")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def _wait(pid: int) -> int:
    """Wait for ``pid``; reap any other child meanwhile (in a pod this is PID 1, and the processes
    a dead child leaves behind come to it)."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:  # already reaped: cannot happen while pid lives
            raise RuntimeError(f"the worker process {pid} is gone without an exit status") from None
        if done == pid:
            return status
