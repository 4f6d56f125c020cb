"""uvicorn's access log (RENTABOT_ACCESS_LOG) without secrets sent in query strings.

A v1 unlock carries its lock token in `?lock-token=`, so the access log would hand every
reader of the log the power to unlock. The filter here rewrites each access-log record's
request target before it is formatted; it is installed in every process that serves.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

#: Query parameters whose values never reach the log: compared as the app reads them
#: (percent-decoded, `+` as space), case-insensitively.
SECRET_PARAMETERS = frozenset({"lock-token", "token", "api_key", "api-key", "key"})
REDACTED = "[redacted]"
_SEPARATORS = re.compile("([&;])")


def redact_query(target: str) -> str:
    """`target` (path and query string, as sent) with every secret parameter's value redacted."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    # Split at `;` too: the app does not, but a token sent that way is still a token.
    parts = _SEPARATORS.split(query)
    changed = False
    for index in range(0, len(parts), 2):  # odd indices hold the separators
        name, equals, _ = parts[index].partition("=")
        if equals and unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            parts[index] = f"{name}={REDACTED}"
            changed = True
    return f"{path}?{''.join(parts)}" if changed else target


class RedactSecrets(logging.Filter):
    """Redacts the target in uvicorn's access-log records, whose arguments are
    `(client_addr, method, full_path, http_version, status_code)`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) > 2
            and isinstance(args[2], str)
            and "?" in args[2]
        ):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def redact_access_log() -> None:
    """Filter uvicorn's access logger in this process, once however many apps it builds."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, RedactSecrets) for existing in logger.filters):
        logger.addFilter(RedactSecrets())
