"""``--log-format json``: one JSON object a line, for log shippers.

Every record gives ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``pid`` and
``message``; the lines of :mod:`hsscp.association_log` add their values
(``calling_ae``, ``called_ae``, ``peer``, ``instances``, ``bytes``,
``outcome``, ...) as fields of their own, so nothing has to be parsed back
out of the text.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

__all__ = ["JsonFormatter"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
