"""The projector's memory bound: what ``outreach project`` sets once, at its start.

Figures beyond DuckDB's pool (``OUTREACH_MEMORY_LIMIT_MB``), because analysts' queries build values
the pool does not count (``projections.memory_guard`` says how each is enforced, and why):

- ``RESIDENT_MARGIN_MIB``: past the pool plus this, in resident memory, every analyst's query
  running is stopped. It holds what the projector itself needs (the interpreter and libraries,
  the index of events, two batches in flight, nats-py's queue) and two queries fetching answers as
  wide as a reply at once.
- ``DATA_MARGIN_MIB``: the kernel's limit of the data segment (``RLIMIT_DATA``), past which an
  allocation fails: what refuses a value built in one allocation, which no watching can stop. The
  data segment counts address space reserved and never touched (thread stacks, the allocators'
  arenas), so this is larger.
- ``DATA_ROOM_MIB`` and ``DATA_CAP_MIB``: after a query, the limit is raised to keep that much free
  for all but DuckDB's allocator, which keeps what a query freed for its own reuse; never past the
  pool plus the cap.

Both other allocators are told to reserve less address space they may never touch
(``tune_allocators``): pyarrow allocates through the C library, not its own mimalloc (which reserves
1 GiB at its first use), and the C library keeps at most ``ARENAS`` arenas (each reserves up to
64 MiB a heap).

Set in the projector's own process only: never in one that runs tests or other work beside it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
from pathlib import Path

RESIDENT_MARGIN_MIB = 768
DATA_MARGIN_MIB = 1536
# What stays free under the limit for all but DuckDB's allocator, raising the limit as far as the
# pool plus DATA_CAP_MIB (projections.memory_guard says why).
DATA_ROOM_MIB = 256
DATA_CAP_MIB = 2048
ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
MIB = 1024 * 1024


def _pool_mib(memory_limit_mb: int) -> int:
    return memory_limit_mb * 1000 * 1000 // MIB


def resident_bound_mib(memory_limit_mb: int) -> int:
    """Resident memory, in MiB, past which analysts' queries are stopped, for a pool of ``memory_limit_mb`` MB."""
    return _pool_mib(memory_limit_mb) + RESIDENT_MARGIN_MIB


def data_bound_mib(memory_limit_mb: int) -> int:
    """The kernel's limit of the data segment, in MiB, for a pool of ``memory_limit_mb`` MB."""
    return _pool_mib(memory_limit_mb) + DATA_MARGIN_MIB


def data_cap_mib(memory_limit_mb: int) -> int:
    """The furthest the limit of the data segment is raised, in MiB, for a pool of ``memory_limit_mb`` MB."""
    return _pool_mib(memory_limit_mb) + DATA_CAP_MIB


def limit_data(limit_mib: int) -> None:
    """Have the kernel refuse this process's allocations past ``limit_mib`` MiB of data segment
    (never above a hard limit already set)."""
    limit = limit_mib * MIB
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def tune_allocators() -> None:
    """pyarrow through the C library, and the C library's arenas few: called before pyarrow is
    imported (it picks its allocator then, and mimalloc reserves 1 GiB at its first use) and before
    threads allocate."""
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    libc = ctypes.util.find_library("c")
    if libc:
        ctypes.CDLL(libc).mallopt(_M_ARENA_MAX, ARENAS)


def peak_rss_mib() -> float:
    """This process's peak resident memory since it started its program (Linux: VmHWM)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
