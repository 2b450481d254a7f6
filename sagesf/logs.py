"""Process logging that never prints a secret.

`configure_logging()` installs one handler on the root logger whose filter masks every secret it
was told about (`register_secret`, done automatically for every `SecretStr` in the settings) and
the usual credential shapes (`password=`, `Authorization: Bearer ...`, `"access_token": "..."`,
`client_secret`, ...) in the message, its arguments and exception text. Masking happens once per
record, in the handler, so libraries' own log lines are covered too.

Limits: a secret split across two log calls, or transformed (base64) before logging, is not
recognised; the settings never log such forms.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable

from pydantic import BaseModel, SecretStr

MASK = "**********"
_secrets: set[str] = set()
_lock = threading.Lock()

_PATTERNS = [
    # key=value and key: value forms for well-known credential names
    re.compile(
        r"(?i)((?:password|passwd|pwd|secret|client_secret|access_token|refresh_token|api_key|token|"
        r"sasl\.password|basic\.auth\.user\.info)[\"']?\s*[:=]\s*[\"']?)([^\"'\s,&}]+)"
    ),
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|oauth)\s+)([^\"'\s,]+)"),
    re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/!=-]{12,})"),
]


def register_secret(value: str | SecretStr | None) -> None:
    """Mask this exact value wherever it appears in a log line from now on."""
    if value is None:
        return
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if len(raw) >= 4:  # masking 1-3 character strings would mangle ordinary text
        with _lock:
            _secrets.add(raw)


def register_settings_secrets(settings: BaseModel) -> None:
    """Register every SecretStr found in a settings tree."""
    for value in _walk(settings):
        register_secret(value)


def _walk(model: BaseModel) -> Iterable[SecretStr]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            yield value
        elif isinstance(value, BaseModel):
            yield from _walk(value)


def redact(text: str) -> str:
    """The text with every known secret and credential-shaped value masked."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks secrets in the whole line (message, args, traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str | int = "INFO", component: str = "sagesf") -> None:
    """One stderr handler with redaction; idempotent."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_sagesf", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s"))
    handler._sagesf = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
