"""Log lines in the seed's format: ``2026-01-14T15:30:00Z [abc-123] message``, or JSON.

Lines go to stdout, where a container runtime or ``marquee cluster`` collects them; all-in-one
mode also writes each to the rotated file of the service that wrote it
(``DATA_DIR/logs/<service>.log``), which ``marquee trace`` reads. Records are formatted where
they are logged (the request ID lives in that task's context) and written by a thread of
their own, so a slow terminal or disk never holds up the event loop.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sys
import time
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
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


ROTATE_BYTES = 10 * 1024 * 1024
ROTATE_KEEP = 3


class ServiceFileHandler(logging.Handler):
    """Writes each record to ``<directory>/<record.service>.log``, opening files on demand and
    rotating each at ``max_bytes`` (``keep`` older files: ``.log.1`` ...)."""

    def __init__(
        self, directory: Path, max_bytes: int = ROTATE_BYTES, keep: int = ROTATE_KEEP
    ) -> None:
        super().__init__()
        self.directory = directory
        self.max_bytes = max_bytes
        self.keep = keep
        self._files: dict[str, RotatingFileHandler] = {}

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        super().setFormatter(fmt)
        for handler in self._files.values():
            handler.setFormatter(fmt)

    def emit(self, record: logging.LogRecord) -> None:
        service = getattr(record, "service", "marquee")
        handler = self._files.get(service)
        if handler is None:
            handler = RotatingFileHandler(
                self.directory / f"{service}.log",
                maxBytes=self.max_bytes,
                backupCount=self.keep,
                encoding="utf-8",
            )
            handler.setFormatter(self.formatter)
            self._files[service] = handler
        handler.emit(record)

    def close(self) -> None:
        for handler in self._files.values():
            handler.close()
        self._files.clear()
        super().close()


class _Pipeline:
    """The queue between the loggers and the one thread that writes their lines."""

    def __init__(self, outputs: list[logging.Handler]) -> None:
        self.queue: queue.Queue[logging.LogRecord] = queue.Queue()
        self.outputs = outputs
        self.listener = QueueListener(self.queue, *outputs)
        self.listener.start()

    def flush(self) -> None:
        self.queue.join()

    def stop(self) -> None:
        self.listener.stop()  # writes what is queued first
        for output in self.outputs:
            output.close()


_pipeline: _Pipeline | None = None


def flush_logs() -> None:
    """Wait until every record logged so far has been written."""
    if _pipeline is not None:
        _pipeline.flush()


def stop_logging() -> None:
    """Write what is queued, stop the writer thread and close the files (idempotent)."""
    global _pipeline
    pipeline, _pipeline = _pipeline, None
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, QueueHandler):
            root.removeHandler(handler)
            handler.close()
    if pipeline is not None:
        pipeline.stop()


def configure_logging(
    level: str = "INFO",
    fmt: str = "text",
    log_dir: Path | None = None,
    *,
    default_service: str = "marquee",
) -> None:
    """Set up the root logger once for the process: stdout, and per-service rotated files
    under ``log_dir`` when given."""
    global _pipeline
    stop_logging()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    outputs: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        outputs.append(ServiceFileHandler(log_dir))
    for output in outputs:
        # The line was formatted before it was queued.
        output.setFormatter(logging.Formatter("%(message)s"))
    _pipeline = _Pipeline(outputs)
    handler = QueueHandler(_pipeline.queue)
    handler.setFormatter(JsonFormatter() if fmt == "json" else SeedFormatter())
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


atexit.register(stop_logging)
