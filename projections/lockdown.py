"""What the projector's connection may not do. It answers analysts' queries, so nothing may reach
outside the database (files, the network, extensions), and no query may set anything back."""

from __future__ import annotations

import duckdb

LOCKDOWN = [
    "SET enable_progress_bar = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET enable_external_access = false",
    "SET lock_configuration = true",
]


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Apply ``LOCKDOWN`` to ``con``'s database. The settings hold for the whole database, so a
    second handle in this process finds them set, and may not set them again."""
    locked = con.execute("SELECT current_setting('lock_configuration')").fetchone()
    if not (locked and locked[0]):
        for setting in LOCKDOWN:
            con.execute(setting)
