"""Every table sessiondb creates has a primary key (Galera replicates no table without one).

The tables of the schema, Alembic's version table (``version_num`` is its key) and, on a
Galera cluster, the schema lock's table (``tests/scale/test_galera.py`` checks that one).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from sessiondb import SessionStore
from sessiondb._schema import tables, version_table_name
from sessiondb._urls import resolve_url


def test_every_table_has_a_primary_key(backend: str, make_db_url: Callable[..., str]) -> None:
    url = make_db_url()
    with SessionStore(url, table_prefix="pk_") as store:
        store.create_session("app", "u")
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        inspector = sa.inspect(engine)
        names = set(inspector.get_table_names())
        ours = {t.name for t in tables("pk_").metadata.sorted_tables} | {version_table_name("pk_")}
        assert ours <= names
        keys = {name: inspector.get_pk_constraint(name)["constrained_columns"] for name in names}
    finally:
        engine.dispose()
    assert {name for name, columns in keys.items() if not columns} == set()
    assert keys[version_table_name("pk_")] == ["version_num"]
