"""Logging filter that keeps secrets out of every log line (keys, tokens, passwords, JWTs)."""

from __future__ import annotations

import logging
import re

_SECRET_KEYS = re.compile(
    r"(?i)(secret[_-]?key|access[_-]?key|password|authorization|api[_-]?key|token)(['\"]?\s*[:=]\s*['\"]?)"
    r"([^'\"\s,&}]+)"
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
REDACTED = "[REDACTED]"
# Extra literal values to redact (e.g. decrypted keys currently in memory) are registered here.
_registered: set[str] = set()


def register_secret(value: str) -> None:
    """Redact this exact value wherever it appears in a log record from now on (values of 8+ chars)."""
    if value and len(value) >= 8:
        _registered.add(value)


def redact(text: str) -> str:
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _SECRET_KEYS.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    for value in _registered:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not lose the record
            message = str(record.msg)
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        for key, value in list(record.__dict__.items()):
            if isinstance(value, str) and key not in ("msg", "message", "levelname", "name", "pathname"):
                cleaned = redact(value)
                if cleaned != value:
                    setattr(record, key, cleaned)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
