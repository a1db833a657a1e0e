"""Passwords out of what is shown: a DSN or a Redis URL carries its password
(``scheme://user:password@host``), and neither a message, a log line nor a status table
may print it."""

from __future__ import annotations

import re

_PASSWORD = re.compile(r"//([^:@/\s]+):[^@/\s]*@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it starred (``scheme://user:***@host``)."""
    return _PASSWORD.sub(r"//\1:***@", text)
