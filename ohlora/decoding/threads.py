"""How many threads a decode step may use, chosen at run time.

Decoding one token is a chain of matrix-vector products: a second thread doubles the memory
bandwidth it can use when its core is free (measured on a 2-core machine: 25 -> 43 tok/s on two
idle cores), but when another process runs on that core, the threads wait for each other at every
one of the ~150 synchronisation points per token and decoding collapses (over a second per
token). So "auto" counts the cores that are free *now* (this process's cores minus the other
runnable threads, from /proc/stat) at the start of every answer, and falls back to one thread.
"""

from __future__ import annotations

import os

MAX_DECODE_THREADS = 4
"""Beyond this, matrix-vector products of a 270M-1.3B model gain little and synchronise more."""


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def own_running(task_dir: str = "/proc/self/task") -> int:
    """Runnable threads of this process (the asking one, and e.g. OpenMP workers still spinning)."""
    n = 0
    try:
        names = os.listdir(task_dir)
    except OSError:
        return 1
    for tid in names:
        try:
            with open(f"{task_dir}/{tid}/stat", encoding="ascii", errors="replace") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]  # the field after "(comm)"
        except (OSError, IndexError):
            continue
        n += state == "R"
    return max(1, n)


def running_elsewhere(stat_path: str = "/proc/stat", task_dir: str = "/proc/self/task") -> int | None:
    """Runnable threads of other processes (None where /proc/stat is absent)."""
    try:
        with open(stat_path, encoding="ascii") as f:
            for line in f:
                if line.startswith("procs_running "):
                    return max(0, int(line.split()[1]) - own_running(task_dir))
    except (OSError, ValueError):
        return None
    return None


def free_cores(stat_path: str = "/proc/stat", task_dir: str = "/proc/self/task") -> int:
    """Cores free for this process right now: at least 1 (the one asking)."""
    busy = running_elsewhere(stat_path, task_dir)
    if busy is None:
        return 1
    return max(1, cores() - busy)


def decode_threads(setting, stat_path: str = "/proc/stat", task_dir: str = "/proc/self/task") -> int:
    """Threads for one answer's decode: a number as given (at most the cores), or for "auto" the
    free cores now, at most MAX_DECODE_THREADS. (ChatConfig.decode_threads is where the setting
    is checked: "auto" or 1-256.)"""
    if setting == "auto":
        return max(1, min(free_cores(stat_path, task_dir), MAX_DECODE_THREADS))
    return min(int(setting), cores())
