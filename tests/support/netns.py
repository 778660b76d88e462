"""Running part of a test inside a Linux network namespace of its own, which has only ``lo``.

Why: Ray opens listeners beyond loopback. A node binds its servers (GCS, raylet, object
manager, agents, every worker's gRPC server) to its node IP, which is the machine's address
unless ``--node-ip-address 127.0.0.1`` is given (older releases bound 0.0.0.0 outright), on
ports it picks itself across the kernel's range; and a driver looks for the machine's IP by
"connecting" to 8.8.8.8:53. Inside a fresh namespace the only address is ``lo``: nothing a test
cluster opens is reachable from outside the machine or can reach out, and its ports cannot
collide with the host's services or with another test run's.

:func:`inside_netns` moves the *calling thread* (not the process) into a new named namespace
(``ip netns add``), ``setns(2)`` on ``/run/netns/NAME``, and back at exit. What that changes:

- Only sockets created from that thread while inside land in the namespace. A connection
  or listener opened before (a pooled PostgreSQL connection to the host's 127.0.0.1:5432, say)
  stays in the host's namespace and keeps working; one opened inside cannot reach the host's
  ``127.0.0.1``: the namespace's loopback is another one, with nothing listening on it.
- Processes started from the thread while inside (``subprocess``, ``fork``) and threads it
  starts while inside inherit the namespace, for their whole life: a server started inside
  keeps running there after the thread went back, and must be stopped before the namespace's
  name is deleted to be gone (``ip netns delete`` only removes the name; the namespace lives
  until its last process exits).
- Other threads of the process, started before, stay where they were.
- Unix sockets bound to a path are not namespaced (the file system is shared): give each
  private server its own socket folder.

Needs root (``CAP_SYS_ADMIN``) and ``ip`` (iproute2); :func:`netns_unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator

__all__ = ["CLONE_NEWNET", "current_netns", "inside_netns", "netns_unavailable", "processes_in"]

#: ``setns(2)``'s nstype for a network namespace.
CLONE_NEWNET = 0x40000000
_THREAD_NS = "/proc/thread-self/ns/net"


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    """Move the calling thread into the network namespace that ``fd`` refers to."""
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns(CLONE_NEWNET): {os.strerror(errno)}")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")


def current_netns() -> str:
    """The calling thread's network namespace, as ``net:[inode]``."""
    return os.readlink(_THREAD_NS)


def processes_in(name: str) -> list[int]:
    """The pids of the other processes whose network namespace is the named one (this
    process is left out: the thread inside may be its main thread)."""
    wanted = f"net:[{os.stat(f'/run/netns/{name}').st_ino}]"
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry.name}/ns/net") == wanted:
                    found.append(int(entry.name))
    return sorted(found)


@functools.cache
def netns_unavailable() -> str | None:
    """Why :func:`inside_netns` cannot work here, or None when it can.

    Checks the platform, root, ``ip``, then makes a namespace for real and enters and leaves
    it from a throwaway thread (so a half-done probe never moves the caller). Cached: the
    answer does not change during a run."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux only (this is {sys.platform})"
    if os.geteuid() != 0:
        return "not root: making a network namespace needs CAP_SYS_ADMIN"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to make a network namespace"
    if not os.path.exists(_THREAD_NS):
        return f"{_THREAD_NS} is missing (Linux older than 3.17?)"
    failure: list[str] = []

    def probe() -> None:
        try:
            with inside_netns("mp-probe"):
                pass
        except Exception as exc:
            failure.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=probe, name="netns-probe")
    thread.start()
    thread.join(60)
    if thread.is_alive():
        return "probing a network namespace did not finish within 60 s"
    return f"cannot make or enter a network namespace: {failure[0]}" if failure else None


@contextlib.contextmanager
def inside_netns(prefix: str = "mp") -> Iterator[str]:
    """Make a network namespace named ``<prefix>-<pid>-<random>`` with ``lo`` up, move the
    calling thread into it, and yield its name.

    At exit, whatever happened inside, the thread goes back to the namespace it was in (an fd
    of its ``/proc/thread-self/ns/net`` is held for that) and the name is deleted. Processes
    still running inside keep the namespace alive: stop them before leaving. Raises if the
    thread cannot go back (it would be left in a namespace about to lose its name); the name
    is deleted all the same."""
    name = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        home = os.open(_THREAD_NS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield name
            finally:
                _setns(home)
        finally:
            os.close(home)
    finally:
        _ip("netns", "delete", name)
