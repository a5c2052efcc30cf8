from pathlib import Path

from marquee.platform.tracelog import build_tree, collect, parse_line

LOGS = {
    "gateway": [
        "2026-01-14T15:30:00Z [abc-123] POST /api/v1/orders status=201 latency=245ms",
        "2026-01-14T15:30:00Z [other] GET /api/v1/shows status=200 latency=3ms",
    ],
    "booking": [
        "2026-01-14T15:30:00Z [abc-123] CreateOrder started user=uuid-1234",
        "2026-01-14T15:30:00Z [abc-123] Calling Identity.GetProfile",
    ],
    "identity": ["2026-01-14T15:30:00Z [abc-123] GetProfile user=uuid-1234 duration=12ms"],
    "notification": ["2026-01-14T15:30:01Z [abc-123] Sending order confirmation email"],
}


def write_logs(directory: Path) -> None:
    for service, lines in LOGS.items():
        (directory / f"{service}.log").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_only_lines_of_the_request_are_collected_oldest_first(tmp_path: Path) -> None:
    write_logs(tmp_path)
    lines = collect(tmp_path, "abc-123")
    assert [line.service for line in lines] == [
        "gateway",
        "booking",
        "booking",
        "identity",
        "notification",
    ]
    assert all("[other]" not in line.message for line in lines)


def test_services_hang_under_their_callers(tmp_path: Path) -> None:
    write_logs(tmp_path)
    (root,) = build_tree(collect(tmp_path, "abc-123"))
    assert root.service == "gateway"
    children = {child.service: child for child in root.children}
    assert set(children) == {"booking", "identity"}
    assert [c.service for c in children["booking"].children] == ["notification"]


def test_durations_are_read_from_latency_and_duration_fields() -> None:
    line = parse_line(LOGS["identity"][0], "identity", 0, "abc-123")
    assert line is not None
    assert line.duration_ms == 12
    assert parse_line(LOGS["gateway"][1], "gateway", 1, "abc-123") is None


def test_json_lines_are_understood_too() -> None:
    raw = (
        '{"time": "2026-01-14T15:30:00Z", "ts": 1768404600.5, "service": "catalog",'
        ' "request_id": "abc-123", "message": "CheckAvailability session=s available=45"}'
    )
    line = parse_line(raw, "marquee", 0, "abc-123")
    assert line is not None
    assert line.service == "catalog"
    assert line.message.endswith("available=45")
