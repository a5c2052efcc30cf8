"""Following one request ID through every service's log file (``marquee trace``). Pure parsing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

_TEXT_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z \[([^\]]+)\] (.*)$")
_DURATION = re.compile(r"\b(?:latency|duration)=(\d+(?:\.\d+)?)ms\b")

# Where a service hangs in the tree: who calls whom (notification after the broker hop).
PARENT = {
    "identity": "gateway",
    "catalog": "gateway",
    "booking": "gateway",
    "notification": "booking",
}


@dataclass(frozen=True, slots=True)
class TraceLine:
    at: datetime
    service: str
    message: str
    order: int  # position in its own file, to keep a service's lines in the order written

    @property
    def duration_ms(self) -> float | None:
        found = _DURATION.search(self.message)
        return float(found.group(1)) if found else None


@dataclass
class TraceNode:
    service: str
    lines: list[TraceLine] = field(default_factory=list)
    children: list[TraceNode] = field(default_factory=list)


def parse_line(raw: str, service: str, order: int, request_id: str) -> TraceLine | None:
    """A line of ``request_id`` in the text or JSON log format, else None."""
    raw = raw.rstrip("\n")
    if raw.startswith("{"):
        try:
            record = json.loads(raw)
        except ValueError:
            return None
        if record.get("request_id") != request_id:
            return None
        at = datetime.fromtimestamp(float(record.get("ts", 0)), UTC)
        return TraceLine(at, record.get("service") or service, str(record["message"]), order)
    match = _TEXT_LINE.match(raw)
    if not match or match.group(2) != request_id:
        return None
    at = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)
    return TraceLine(at, service, match.group(3), order)


def collect(log_dir: Path, request_id: str) -> list[TraceLine]:
    """Every line of ``request_id`` in ``log_dir/*.log``, oldest first."""
    found: list[TraceLine] = []
    for path in sorted(log_dir.glob("*.log")):
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, raw in enumerate(lines):
                if request_id not in raw:
                    continue
                line = parse_line(raw, path.stem, number, request_id)
                if line is not None:
                    found.append(line)
    # Within one second, callers before callees, then each service's lines in written order.
    return sorted(found, key=lambda line: (line.at, _depth(line.service), line.service, line.order))


def _depth(service: str) -> int:
    depth = 0
    while service in PARENT:
        service = PARENT[service]
        depth += 1
    return depth


def build_tree(lines: Iterable[TraceLine]) -> list[TraceNode]:
    """Group lines by service and hang each service under its caller; roots come back first."""
    nodes: dict[str, TraceNode] = {}
    for line in lines:
        nodes.setdefault(line.service, TraceNode(line.service)).lines.append(line)
    roots: list[TraceNode] = []
    for service, node in nodes.items():
        parent = PARENT.get(service)
        while parent is not None and parent not in nodes:
            parent = PARENT.get(parent)
        if parent is None:
            roots.append(node)
        else:
            nodes[parent].children.append(node)
    return roots
