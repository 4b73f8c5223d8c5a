"""The stores docs/deploy.md configures: read replicas, and a transaction-mode pooler.

A store connects on its first call, not when it is made, so building one checks its URL and
options (a wrong one raises ``ConfigurationError`` at once) without the servers being there:
run this file to see that the configurations of docs/deploy.md are accepted, and copy the one
you need with your own hosts (``db1``... and ``pgbouncer`` stand for them here).
"""

import asyncio

from sessiondb import AsyncSessionStore, SessionStore


def replicated() -> SessionStore:
    """A primary found among three hosts, and reads on the two standbys."""
    store = SessionStore(
        "postgresql://app:pw@db1:5432,db2:5432,db3:5432/sessions?target_session_attrs=read-write",
        read_urls=[
            "postgresql://app:pw@db2:5432/sessions",
            "postgresql://app:pw@db3:5432/sessions",
        ],
    )
    return store


def behind_pgbouncer() -> SessionStore:
    """PgBouncer (Supavisor, RDS Proxy) in transaction mode: the switch in the URL..."""
    store = SessionStore("postgresql://app:pw@pgbouncer:6432/sessions?pooler=transaction")
    return store


def behind_pgbouncer_async() -> AsyncSessionStore:
    """... or as an option of the store."""
    store = AsyncSessionStore("postgresql://app:pw@pgbouncer:6432/sessions", pooler="transaction")
    return store


for make in (replicated, behind_pgbouncer):
    with make() as store:
        print(f"{make.__name__}: a {store.backend} store, not connected yet")
asyncio.run(behind_pgbouncer_async().close())
print("behind_pgbouncer_async: accepted")
