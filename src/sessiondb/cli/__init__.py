"""The ``sessiondb`` command: look after a sessiondb database from the shell.

A thin shell over the public API: every command opens a :class:`~sessiondb.SessionStore` and
calls its methods; only ``uninstall`` reaches below it, to find and drop sessiondb's own
tables. Output is made with Rich for people and, with ``--json``, as JSON (Lines) for scripts.
A problem is reported as one line on stderr with a non-zero exit status (2 for bad usage, 1 for
anything else), never as a traceback.

Run it as ``sessiondb ...`` or ``python -m sessiondb ...``; ``main()`` is the entry point and
``app`` the Typer application. ``import sessiondb`` never imports this package (nor Typer or
Rich). The modules: ``_app`` (the app, shared options, error reporting), ``_output`` (tables,
progress bars, JSON), and the commands by subject: ``_schema``, ``_sessions``, ``_transfer``.
"""

from __future__ import annotations

from . import _schema, _sessions, _transfer
from ._app import CliError, Command, app, main, parse_duration, parse_time

__all__ = ["CliError", "app", "main", "parse_duration", "parse_time"]

# Every command, in the order `sessiondb --help` lists them.
for _name, _command in (
    ("migrate", _schema.migrate_command),
    ("current", _schema.current_command),
    ("history", _schema.history_command),
    ("ls", _sessions.ls_command),
    ("show", _sessions.show_command),
    ("rm", _sessions.rm_command),
    ("clear", _sessions.clear_command),
    ("purge", _sessions.purge_command),
    ("stats", _sessions.stats_command),
    ("export", _transfer.export_command),
    ("import", _transfer.import_command),
    ("copy", _transfer.copy_command),
    ("backup", _transfer.backup_command),
    ("import-adk", _transfer.import_adk_command),
    ("doctor", _schema.doctor_command),
    ("uninstall", _schema.uninstall_command),
):
    app.command(_name, cls=Command)(_command)
del _name, _command
