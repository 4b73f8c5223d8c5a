"""Expiry, metadata, pagination and bulk deletion (docs/lifecycle.md), on one store.

The database is ``SESSIONDB_URL``, else ``sqlite:///./lifecycle.db``. Run it again: it adds
to what the first run stored.
"""

import os
from datetime import timedelta

from sessiondb import SessionStore

url = os.environ.get("SESSIONDB_URL", "sqlite:///./lifecycle.db")

# expiry: a default for new sessions, per session, and changed later
store = SessionStore(url, ttl=timedelta(days=30), sliding_ttl=True)  # defaults for new sessions
s = store.create_session("my_app", "alice", ttl=timedelta(hours=1))  # absolute: gone in an hour
s = store.create_session("my_app", "bob", ttl=3600, sliding=True)  # renewed by every write
store.set_metadata(s.id, ttl=None)  # never expires
print("bob's session expires at", store.get_session("my_app", "bob", s.id).expires_at)

# metadata: a title and labels, then filters on them
for n in range(45):
    labels = ["vip", "eu"] if n % 3 == 0 else ["eu"]
    store.create_session("my_app", "alice", {"n": n}, title=f"Order {n}", labels=labels)
print(store.count_sessions("my_app", "alice", label="vip"), "vip sessions of alice")

# pagination: every page costs what the first one does
page = store.list_sessions("my_app", "alice", limit=20)  # newest update first
while page.next_cursor:
    page = store.list_sessions("my_app", "alice", limit=20, cursor=page.next_cursor)
print("the last page holds", len(page), "sessions")

# bulk deletion, in bounded batches; expired sessions go with purge_expired
store.delete_sessions("customer_support_bot", older_than=timedelta(days=30))
print(store.purge_expired(dry_run=True), "expired sessions await a purge")
store.close()
