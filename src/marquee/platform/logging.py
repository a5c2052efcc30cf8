"""Log lines in the seed's format: ``2026-01-14T15:30:00Z [abc-123] message``.

Each line goes to stderr and to the log file of the service that wrote it
(``DATA_DIR/logs/<service>.log``), so ``marquee trace`` can follow one request ID through every
service, whether they share a process or not.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from marquee.platform.context import current_request_id, service_var

KNOWN_SERVICES = frozenset({"gateway", "identity", "catalog", "booking", "notification"})


def _service_of(record: logging.LogRecord, default: str) -> str:
    """The running service (from the context), else the logger's package, else ``default``.

    The context wins so that, say, Booking's call through the Identity client logs as Booking.
    """
    running = service_var.get()
    if running:
        return running
    parts = record.name.split(".")
    if len(parts) > 1 and parts[0] == "marquee" and parts[1] in KNOWN_SERVICES:
        return parts[1]
    return default


class ContextFilter(logging.Filter):
    """Stamps each record with the request ID and the service it belongs to."""

    def __init__(self, default_service: str = "marquee") -> None:
        super().__init__()
        self.default_service = default_service

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        record.service = _service_of(record, self.default_service)
        return True


RequestIdFilter = ContextFilter


class SeedFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{stamp}Z [{getattr(record, 'request_id', '-')}] {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "ts": round(record.created, 6),
            "level": record.levelname,
            "service": getattr(record, "service", None),
            "logger": record.name,
            "request_id": getattr(record, "request_id", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


class ServiceFileHandler(logging.Handler):
    """Writes each record to ``<directory>/<record.service>.log``, opening files on demand."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self._files: dict[str, logging.FileHandler] = {}

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        super().setFormatter(fmt)
        for handler in self._files.values():
            handler.setFormatter(fmt)

    def emit(self, record: logging.LogRecord) -> None:
        service = getattr(record, "service", "marquee")
        handler = self._files.get(service)
        if handler is None:
            handler = logging.FileHandler(self.directory / f"{service}.log", encoding="utf-8")
            handler.setFormatter(self.formatter)
            self._files[service] = handler
        handler.emit(record)

    def close(self) -> None:
        for handler in self._files.values():
            handler.close()
        self._files.clear()
        super().close()


def configure_logging(
    level: str = "INFO",
    fmt: str = "text",
    log_dir: Path | None = None,
    *,
    default_service: str = "marquee",
) -> None:
    """Set up the root logger once for the process: stderr, and per-service files when given."""
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else SeedFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(ServiceFileHandler(log_dir))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(ContextFilter(default_service))
        root.addHandler(handler)
    root.setLevel(level)
    # Neither format shows where a call came from, nor thread or process: don't collect them
    # (the logging HOWTO's "Optimization" settings; findCaller walks the stack per record).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for noisy in ("uvicorn.access", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
