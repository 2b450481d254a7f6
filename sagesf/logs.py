"""Process logging that never prints a secret.

`configure_logging()` installs one handler on the root logger whose filter masks every secret it
was told about (`register_secret`, done automatically for every `SecretStr` in the settings) and
the usual credential shapes (`password=`, `Authorization: Bearer ...`, `"access_token": "..."`,
`client_secret`, ...) in the message, its arguments and exception text. Masking happens once per
record, in the handler, so libraries' own log lines are covered too.

A registered secret is masked in the forms it travels in, too: brace-quoted for an ODBC driver
(`}` doubled), URL-encoded, JSON- and repr-escaped; and a registered connection string
(`DSN=...;PWD={...}`) has its password attribute registered on its own, so a driver message that
repeats only part of the string is masked as well. `redact` is what the other surfaces use
(dead-letter headers, /healthz details, `sagesf trace`).

Limits: a secret split across two log calls, or transformed (base64) before logging, is not
recognised; the settings never log such forms.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, SecretStr

MASK = "**********"
_secrets: set[str] = set()
_lock = threading.Lock()

_CREDENTIAL_NAMES = (
    r"password|passwd|pwd|secret|client_secret|access_token|refresh_token|api_key|token|"
    r"sasl\.password|basic\.auth\.user\.info"
)
# an ODBC value in braces runs to the brace that closes it; `}}` inside is one escaped `}`
_BRACED = r"\{(?:[^}]|\}\})*\}?"
_PATTERNS = [
    # PWD={pa}}ss word} in a connection string: the whole braced value
    re.compile(rf"(?i)((?:{_CREDENTIAL_NAMES})\s*=\s*)({_BRACED})"),
    # PWD=... (ODBC's own name for it) runs to the next `;`
    re.compile(r"(?i)(\bpwd\s*=\s*)([^;{\s][^;]*)"),
    # key=value and key: value forms for well-known credential names
    re.compile(rf"(?i)((?:{_CREDENTIAL_NAMES})[\"']?\s*[:=]\s*[\"']?)([^\"'\s,&}}]+)"),
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|oauth)\s+)([^\"'\s,]+)"),
    re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/!=-]{12,})"),
]
# a credential attribute of a connection string (`;PWD={...};`, `Password=...;`)
_ATTRIBUTE = re.compile(rf"(?i)(?:^|;)\s*(?:{_CREDENTIAL_NAMES})\s*=\s*({_BRACED}|[^;]*)")


def register_secret(value: str | SecretStr | None) -> None:
    """Mask this value, and the forms it travels in, wherever it appears from now on."""
    if value is None:
        return
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    forms = _forms(raw)
    for attribute in _ATTRIBUTE.finditer(raw):
        forms |= _forms(_unquoted(attribute.group(1)))
    # masking 1-3 character strings would mangle ordinary text
    found = {form for form in forms if len(form) >= 4}
    with _lock:
        _secrets.update(found)


def _forms(raw: str) -> set[str]:
    """The secret as written, brace-escaped for ODBC, URL-encoded, JSON- and repr-escaped."""
    return {
        raw,
        raw.replace("}", "}}"),
        quote(raw, safe=""),
        quote_plus(raw, safe=""),
        json.dumps(raw)[1:-1],
        repr(raw)[1:-1],
    }


def _unquoted(value: str) -> str:
    """An ODBC attribute value without its braces (`{pa}}ss}` -> `pa}ss`)."""
    value = value.strip()
    if value.startswith("{") and value.endswith("}"):
        return value[1:-1].replace("}}", "}")
    return value


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
