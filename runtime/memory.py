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
  arenas), so this is larger. It is set once and never raised.

The allocators are told to hold no more address space than they use (``tune_allocators``):

- DuckDB's bundled jemalloc returns the address space of what it freed to the kernel
  (``retain:false``, through ``DUCKDB_JE_MALLOC_CONF``, which it reads when duckdb is loaded). By
  default it keeps that address space for its own reuse: after a query that built a value of
  800 MB the data segment stayed at the size it reached, and the rest of the process (the writer's
  Python, pyarrow, nats-py's buffers) found no room under the limit while nothing was resident.
- pyarrow allocates through the C library, not its own mimalloc (which reserves 1 GiB at its first
  use), and the C library keeps at most ``ARENAS`` arenas (each reserves up to 64 MiB a heap).

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
ARENAS = 2
# DuckDB's jemalloc is built with the prefix DUCKDB_JE_ and reads its options from this variable,
# after those compiled in.
JEMALLOC_CONF_VAR = "DUCKDB_JE_MALLOC_CONF"
JEMALLOC_CONF = "retain:false"
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


def limit_data(limit_mib: int) -> None:
    """Have the kernel refuse this process's allocations past ``limit_mib`` MiB of data segment
    (never above a hard limit already set)."""
    limit = limit_mib * MIB
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def tune_allocators() -> None:
    """DuckDB's jemalloc unmapping what it freed, pyarrow through the C library, and the C library's
    arenas few: called before duckdb is imported (jemalloc reads its options when the library is
    loaded), before pyarrow is (it picks its allocator then) and before threads allocate."""
    conf = os.environ.get(JEMALLOC_CONF_VAR)
    os.environ[JEMALLOC_CONF_VAR] = f"{conf},{JEMALLOC_CONF}" if conf else JEMALLOC_CONF  # the last option wins
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
