"""The runnable examples in examples/ and docs/ run, and a second run continues the first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_guide_chatbot_continues_its_session(tmp_path: Path) -> None:
    first = run("chatbot.py", tmp_path)
    assert "Started new session" in first
    assert "Messages in current session: 3" in first
    second = run("chatbot.py", tmp_path)
    assert "Started new session" not in second
    assert "Total sessions in database: 1" in second
    assert "Messages in current session: 6" in second


def test_events_chatbot_appends_history(tmp_path: Path) -> None:
    first = run("chatbot_events.py", tmp_path)
    assert first.splitlines()[:3] == [
        "Hello! What's your name?",
        "Nice to meet you, Alice!",
        "Thanks for your message, Alice!",
    ]
    assert "6 messages" in first and "turns=3" in first
    second = run("chatbot_events.py", tmp_path)
    assert "12 messages" in second and "turns=6" in second
