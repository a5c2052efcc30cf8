"""Demo data for ``marquee up``: the seed's 周杰伦 show (show-5678, session-001, vip-a: 45 seats
at 1280 CNY) dated in the future, and a dozen more shows across cities and categories.

Loaded in one transaction with fixed IDs, only into a catalog with no shows: when several
instances start at once, one commits and the others' inserts collide and roll back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal

from sqlalchemy.exc import IntegrityError

from marquee.catalog import domain
from marquee.catalog import repository as repo
from marquee.catalog.domain import (
    DEFAULT_CURRENCY,
    DEFAULT_TIMEZONE,
    AreaId,
    SeatArea,
    Session,
    SessionId,
    Show,
    ShowId,
    Stock,
    Venue,
    VenueId,
)
from marquee.catalog.service import CatalogService

log = logging.getLogger("marquee.catalog")

SEED_SHOW_ID = "show-5678"
SEED_SESSION_ID = "session-001"
SEED_AREA_ID = "vip-a"


@dataclass(frozen=True, slots=True)
class _Area:
    name: str
    price: str
    capacity: int


@dataclass(frozen=True, slots=True)
class _Show:
    show_id: str
    title: str
    category: str
    venue_id: str
    description: str
    days_ahead: tuple[int, ...]  # one session per entry, days after the seed's first session
    starts: time
    hours: int
    areas: tuple[_Area, ...]


VENUES: tuple[tuple[str, str, str, str], ...] = (
    ("venue-shanghai-stadium", "上海体育场", "上海", "上海市徐汇区天钥桥路666号"),
    ("venue-shanghai-grand-theatre", "上海大剧院", "上海", "上海市黄浦区人民大道300号"),
    ("venue-shanghai-drama-centre", "上海话剧艺术中心", "上海", "上海市徐汇区安福路288号"),
    ("venue-shanghai-qizhong", "旗忠森林网球中心", "上海", "上海市闵行区元江路5500号"),
    ("venue-beijing-national-stadium", "国家体育场", "北京", "北京市朝阳区国家体育场南路1号"),
    ("venue-beijing-capital-theatre", "首都剧场", "北京", "北京市东城区王府井大街22号"),
    ("venue-beijing-national-museum", "中国国家博物馆", "北京", "北京市东城区东长安街16号"),
    ("venue-guangzhou-gymnasium", "广州体育馆", "广州", "广州市白云区白云大道南783号"),
    ("venue-guangzhou-tianhe", "天河体育场", "广州", "广州市天河区天河路299号"),
    ("venue-shenzhen-poly-theatre", "深圳保利剧院", "深圳", "深圳市南山区后海滨路2388号"),
    ("venue-shenzhen-moca", "深圳当代艺术与城市规划馆", "深圳", "深圳市福田区福中路184号"),
    ("venue-hangzhou-grand-theatre", "杭州大剧院", "杭州", "杭州市上城区新业路39号"),
    ("venue-hangzhou-huanglong", "黄龙体育中心", "杭州", "杭州市西湖区黄龙路1号"),
    ("venue-chengdu-phoenix-hill", "凤凰山体育公园", "成都", "成都市金牛区凤凰山"),
    ("venue-chengdu-museum", "成都博物馆", "成都", "成都市青羊区小河街1号"),
)

_CONCERT = (
    _Area("VIP A区", "1280", 45),
    _Area("VIP B区", "1080", 80),
    _Area("看台A区", "680", 400),
    _Area("看台B区", "380", 800),
)
_THEATRE = (_Area("一楼前排", "880", 120), _Area("一楼后排", "580", 300), _Area("二楼", "280", 400))
_EXHIBITION = (_Area("成人票", "120", 2000), _Area("学生票", "99.5", 500))
_MATCH = (_Area("场边票", "1580", 40), _Area("内场", "480", 600), _Area("看台", "180", 3000))

OTHER_SHOWS: tuple[_Show, ...] = (
    _Show(
        "show-demo-mayday",
        "五月天 诺亚方舟 巡回演唱会",
        "演唱会",
        "venue-beijing-national-stadium",
        "五月天回到鸟巢，带来诺亚方舟复刻版现场。",
        (30, 31),
        time(19, 30),
        3,
        _CONCERT,
    ),
    _Show(
        "show-demo-teahouse",
        "话剧《茶馆》",
        "话剧",
        "venue-beijing-capital-theatre",
        "老舍经典，北京人艺原版演绎。",
        (12, 13, 14),
        time(19, 30),
        3,
        _THEATRE,
    ),
    _Show(
        "show-demo-ancient-china",
        "《古代中国》文物特展",
        "展览",
        "venue-beijing-national-museum",
        "从史前到明清，一次看遍中华文明的珍藏。",
        (3, 10),
        time(9, 0),
        8,
        _EXHIBITION,
    ),
    _Show(
        "show-demo-phantom",
        "音乐剧《剧院魅影》中文版",
        "音乐剧",
        "venue-shanghai-grand-theatre",
        "韦伯经典音乐剧首个中文版本。",
        (21, 22),
        time(19, 30),
        3,
        _THEATRE,
    ),
    _Show(
        "show-demo-thunderstorm",
        "话剧《雷雨》",
        "话剧",
        "venue-shanghai-drama-centre",
        "曹禺名作，一个闷热夏日里的家族悲剧。",
        (9,),
        time(19, 30),
        3,
        _THEATRE,
    ),
    _Show(
        "show-demo-tennis",
        "上海网球大师赛 决赛日",
        "体育",
        "venue-shanghai-qizhong",
        "ATP 1000 大师赛男单决赛。",
        (45,),
        time(14, 0),
        4,
        _MATCH,
    ),
    _Show(
        "show-demo-jj",
        "林俊杰 JJ20 巡回演唱会",
        "演唱会",
        "venue-guangzhou-gymnasium",
        "出道二十年巡演，广州站。",
        (40, 41),
        time(19, 30),
        3,
        _CONCERT,
    ),
    _Show(
        "show-demo-football",
        "中超联赛 广州队 vs 上海申花",
        "体育",
        "venue-guangzhou-tianhe",
        "中超第二十八轮。",
        (16,),
        time(19, 35),
        2,
        _MATCH,
    ),
    _Show(
        "show-demo-mahua",
        "开心麻花《乌龙山伯爵》",
        "话剧",
        "venue-shenzhen-poly-theatre",
        "爆笑喜剧，十年常演不衰。",
        (6, 7),
        time(20, 0),
        2,
        _THEATRE,
    ),
    _Show(
        "show-demo-monet",
        "《莫奈与印象派》特展",
        "展览",
        "venue-shenzhen-moca",
        "睡莲、干草堆与日出：印象派真迹展。",
        (2, 9, 16),
        time(10, 0),
        8,
        _EXHIBITION,
    ),
    _Show(
        "show-demo-cats",
        "音乐剧《猫》",
        "音乐剧",
        "venue-hangzhou-grand-theatre",
        "原版音乐剧《猫》杭州站。",
        (27, 28),
        time(19, 30),
        3,
        _THEATRE,
    ),
    _Show(
        "show-demo-cba",
        "CBA 常规赛 浙江广厦 vs 辽宁本钢",
        "体育",
        "venue-hangzhou-huanglong",
        "CBA 常规赛焦点之战。",
        (11,),
        time(19, 35),
        3,
        _MATCH,
    ),
    _Show(
        "show-demo-lijian",
        "李健 万物安生时 巡回演唱会",
        "演唱会",
        "venue-chengdu-phoenix-hill",
        "李健巡回演唱会成都站。",
        (55,),
        time(19, 30),
        3,
        _CONCERT,
    ),
    _Show(
        "show-demo-sanxingdui",
        "《三星堆》数字艺术展",
        "展览",
        "venue-chengdu-museum",
        "沉浸式数字艺术重现古蜀文明。",
        (4, 18),
        time(10, 0),
        8,
        _EXHIBITION,
    ),
)


def seed_session_start(now: datetime) -> datetime:
    """The seed's 08-15 19:30 in Shanghai, in the first year (2026 or later) at least a week
    away, so the demo session is always on sale."""
    tz = domain.zone(DEFAULT_TIMEZONE)
    year = 2026
    while True:
        start = datetime(year, 8, 15, 19, 30, tzinfo=tz)
        if start >= now + timedelta(days=7):
            return start.astimezone(now.tzinfo)
        year += 1


def _records(now: datetime) -> tuple[list[Venue], list[Show], list[Session], list[SeatArea]]:
    tz = domain.zone(DEFAULT_TIMEZONE)
    sale_opened = now - timedelta(days=1)
    venues = [
        Venue(VenueId(vid), name, city, address, DEFAULT_TIMEZONE, now, now)
        for vid, name, city, address in VENUES
    ]
    shows: list[Show] = []
    sessions: list[Session] = []
    areas: list[SeatArea] = []

    def add_session(show_id: str, session_id: str, starts_at: datetime, hours: int) -> None:
        sessions.append(
            Session(
                SessionId(session_id),
                ShowId(show_id),
                starts_at,
                starts_at + timedelta(hours=hours),
                sale_opened,
                None,
                4,
                now,
                now,
            )
        )

    def add_area(session_id: str, area_id: str, area: _Area) -> None:
        areas.append(
            SeatArea(
                AreaId(area_id),
                SessionId(session_id),
                area.name,
                Decimal(area.price),
                DEFAULT_CURRENCY,
                Stock(area.capacity),
                0,
                now,
                now,
            )
        )

    # The seed's show: its first session on the seed's date, the second the next evening.
    shows.append(
        Show(
            ShowId(SEED_SHOW_ID),
            "周杰伦 2026 世界巡回演唱会",
            "演唱会",
            VenueId("venue-shanghai-stadium"),
            "周杰伦嘉年华世界巡回演唱会上海站，经典曲目全新编排。",
            "on_sale",
            now,
            now,
        )
    )
    first = seed_session_start(now)
    add_session(SEED_SHOW_ID, SEED_SESSION_ID, first, 3)
    add_session(SEED_SHOW_ID, "session-002", first + timedelta(days=1), 3)
    for slug, area in zip(("vip-a", "vip-b", "stand-a", "stand-b"), _CONCERT, strict=True):
        add_area(SEED_SESSION_ID, slug, area)
        add_area("session-002", f"session-002-{slug}", area)

    # The other shows follow the seed's, so that the seed's show leads the listing (soonest
    # first) and its home page, as the seed's scenario expects to find it.
    after_seed = first.astimezone(tz).date()
    for spec in OTHER_SHOWS:
        shows.append(
            Show(
                ShowId(spec.show_id),
                spec.title,
                spec.category,
                VenueId(spec.venue_id),
                spec.description,
                "on_sale",
                now,
                now,
            )
        )
        for n, days in enumerate(spec.days_ahead, start=1):
            session_id = f"{spec.show_id.replace('show-', 'session-')}-{n}"
            starts_at = datetime.combine(after_seed + timedelta(days=days), spec.starts, tzinfo=tz)
            add_session(spec.show_id, session_id, starts_at.astimezone(now.tzinfo), spec.hours)
            for m, area in enumerate(spec.areas, start=1):
                add_area(session_id, f"{session_id}-area-{m}", area)
    return venues, shows, sessions, areas


async def load_demo_data(service: CatalogService, now: datetime) -> bool:
    """Load the demo catalog unless there are shows already; True if this call loaded it."""
    venues, shows, sessions, areas = _records(now.replace(microsecond=0))
    zones = {venue.venue_id: venue.timezone for venue in venues}
    show_venue = {show.show_id: show.venue_id for show in shows}
    try:
        async with service.engine.begin() as conn:
            if await repo.count_shows(conn):
                return False
            for venue in venues:
                await repo.insert_venue(conn, venue)
            for show in shows:
                await repo.insert_show(conn, show)
            for session in sessions:
                tz = zones[show_venue[session.show_id]]
                await repo.insert_session(conn, session, domain.local_date(session.starts_at, tz))
            for area in areas:
                await repo.insert_area(conn, area)
    except IntegrityError:
        log.info("Demo data is being loaded by another catalog instance")
        return False
    await service.listings.invalidate()
    log.info(
        "Loaded demo data: %d shows, %d sessions, %d seat areas",
        len(shows),
        len(sessions),
        len(areas),
    )
    return True
