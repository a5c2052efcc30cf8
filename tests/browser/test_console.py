"""The organiser console in a real browser: from a new show to an approved refund, and check-in."""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.browser.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Server,
    playwright_expect,
    screenshot,
)
from tests.browser.pages import loaded_images, low_contrast, sign_in, unlabelled_controls

expect = playwright_expect()


def sign_in_organiser(page: Any, server: Server, path: str = "/console") -> None:
    page.goto(server.url(path))
    expect(page.get_by_role("heading", name="Log in", level=1)).to_be_visible()
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("Organiser console")


def form_named(page: Any, heading: str) -> Any:
    return page.locator("form", has=page.get_by_role("heading", name=heading, exact=True))


def row_show_id(page: Any) -> str:
    """The show ID of the console page ``page`` is on (/console/shows/{id})."""
    return str(page.url).rsplit("/", 1)[1]


def test_an_organiser_creates_a_show_sells_it_and_approves_a_buyers_refund(
    new_page: Any, server: Server
) -> None:
    tag = uuid.uuid4().hex[:6]
    title = f"Browser Test Concert {tag}"
    venue = f"Browser Hall {tag}"
    admin = new_page("en-US")
    sign_in_organiser(admin, server)
    expect(admin.get_by_role("heading", name="Shows", level=1)).to_be_visible()
    expect(admin.get_by_role("row", name=re.compile("周杰伦"))).to_be_visible()

    venue_form = form_named(admin, "New venue")
    venue_form.get_by_label("Venue name").fill(venue)
    venue_form.get_by_label("City").fill("苏州")
    venue_form.get_by_label("Address").fill("苏州工业园区 1 号")
    venue_form.get_by_role("button", name="Create venue").click()

    show_form = form_named(admin, "New show")
    show_form.get_by_label("Venue").select_option(label=f"{venue} · 苏州")
    show_form.get_by_label("Title").fill(title)
    show_form.get_by_label("Category").fill("演唱会")
    show_form.get_by_label("Description").fill("A show made by the browser tests.")
    assert unlabelled_controls(admin) == []
    assert low_contrast(admin) == []
    screenshot(admin, "20-console-shows")
    show_form.get_by_role("button", name="Create show").click()

    expect(admin.get_by_role("heading", name=title, level=1)).to_be_visible()
    expect(admin.locator(".kicker")).to_contain_text("Draft")
    expect(admin.get_by_text("No sessions yet.")).to_be_visible()

    session_form = form_named(admin, "New session")
    expect(session_form).to_contain_text("Local time at the venue (Asia/Shanghai)")
    session_form.get_by_label("Starts", exact=True).fill("2031-05-01T19:30")
    session_form.get_by_label("Ends", exact=True).fill("2031-05-01T22:00")
    session_form.get_by_role("button", name="Create session").click()
    # 19:30 at the venue, whatever the organiser's own time zone (London here).
    session = admin.locator("section.session")
    expect(session.get_by_role("heading", level=3)).to_contain_text(
        "2031-05-01 19:30 (Asia/Shanghai)"
    )
    expect(session).to_contain_text("No seat areas yet.")

    area_form = form_named(admin, "New seat area")
    area_form.get_by_label("Area name").fill("Floor")
    area_form.get_by_label("Price").fill("99.5")
    area_form.get_by_label("Capacity").fill("10")
    area_form.get_by_role("button", name="Add area").click()
    row = admin.get_by_role("row", name=re.compile("^Floor"))
    expect(row.locator("td")).to_have_text(["CN¥99.50", "10", "0", "0", "10", "CN¥0"])

    admin.get_by_role("button", name="Put on sale").click()
    expect(admin.get_by_text(f"“{title}” is now On sale.")).to_be_visible()
    expect(admin.locator(".kicker")).to_contain_text("On sale")
    expect(admin.get_by_role("button", name="Take off sale")).to_be_visible()
    expect(session.get_by_role("heading", level=3)).to_contain_text("On sale")

    # A buyer finds the show, buys two seats, pays and asks for a refund.
    email, _ = server.new_buyer("Refund Buyer")
    buyer = new_page("zh-CN")
    sign_in(buyer, server, email)
    buyer.goto(server.url("/"))
    buyer.get_by_label("搜索").fill(tag)
    buyer.get_by_role("button", name="搜索").click()
    buyer.get_by_role("link", name=title).click()
    buyer.get_by_role("radio", name=re.compile("^Floor")).check()
    buyer.get_by_label("数量").fill("2")
    expect(buyer.locator(".total")).to_have_text("合计：¥199")
    buyer.get_by_role("button", name="立即购买").click()
    buyer.get_by_role("button", name="支付 ¥199").click()
    expect(buyer.locator(".order-status")).to_have_text("已支付")
    widths = loaded_images(buyer, "img.qr")
    assert len(widths) == 2
    assert all(width > 0 for width in widths), widths
    order_id = buyer.url.rsplit("/", 1)[1]

    # The organiser's page shows the sale without a reload.
    expect(row.locator("td")).to_have_text(["CN¥99.50", "10", "0", "2", "8", "CN¥199"])
    expect(admin.locator("tfoot")).to_contain_text("CN¥199")
    expect(admin.locator(".live")).to_contain_text("Sales update every 5 s")
    assert unlabelled_controls(admin) == []
    assert low_contrast(admin) == []
    screenshot(admin, "21-console-show-live-sales")

    buyer.get_by_label("退款原因（可选）").fill("行程冲突")
    buyer.get_by_role("button", name="申请退款").click()
    expect(buyer.get_by_text("退款申请已提交，等待主办方审核。")).to_be_visible()
    expect(buyer.locator(".refund-state")).to_contain_text("退款申请审核中")

    admin.get_by_role("navigation", name="Console sections").get_by_role(
        "link", name="Refund requests"
    ).click()
    expect(admin.get_by_role("heading", name="Refund requests", level=1)).to_be_visible()
    request = admin.get_by_role("row", name=re.compile(order_id))
    expect(request).to_contain_text("CN¥199")
    expect(request).to_contain_text("行程冲突")
    expect(request).to_contain_text("Pending")
    assert unlabelled_controls(admin) == []
    assert low_contrast(admin) == []
    screenshot(admin, "22-console-refund-requests")
    request.get_by_role("button", name="Approve refund").click()
    expect(request).to_contain_text("Approved: the order is refunded.")
    expect(request).to_contain_text("Approved")

    buyer.reload()
    expect(buyer.locator(".order-status")).to_have_text("已退款")
    expect(buyer.locator(".refund-state")).to_contain_text("退款已批准")
    expect(buyer.locator(".ticket .seat").first).to_contain_text("已作废")
    screenshot(buyer, "23-order-refunded")

    # The seats are back on sale and the sales table says so.
    admin.go_back()
    expect(admin.get_by_role("heading", name=title, level=1)).to_be_visible()
    row = admin.get_by_role("row", name=re.compile("^Floor"))
    expect(row.locator("td")).to_have_text(["CN¥99.50", "10", "0", "0", "10", "CN¥0"])

    # Off sale: buyers see it and cannot buy.
    admin.get_by_role("button", name="Take off sale").click()
    expect(admin.locator(".kicker")).to_contain_text("Off sale")
    expect(admin.locator("section.session h3")).to_contain_text("Not on sale")
    buyer.goto(server.url(f"/shows/{row_show_id(admin)}"))
    expect(buyer.get_by_role("heading", name=title, level=1)).to_be_visible()
    expect(buyer.locator("section.show")).to_contain_text("已停售")
    expect(buyer.get_by_role("button", name="立即购买")).to_be_disabled()


def test_an_organiser_checks_tickets_in_by_pasting_their_qr_payload(
    new_page: Any, server: Server
) -> None:
    scene = server.on_sale_show(capacity=4)
    _, token = server.new_buyer()
    placed = server.order(token, scene.session_id, scene.area_id, 1)
    paid = server.pay(token, placed["order_id"])
    payload = paid["tickets"][0]["qr_payload"]

    page = new_page("zh-CN")
    page.goto(server.url("/login?next=/console/checkin"))
    page.get_by_label("邮箱").fill(ADMIN_EMAIL)
    page.get_by_label("密码").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="检票", level=1)).to_be_visible()
    box = page.get_by_label("二维码内容")
    expect(box).to_be_focused()

    box.fill(payload)
    box.press("Enter")
    result = page.locator(".checkin-result")
    expect(result).to_contain_text("有效，检票通过")
    expect(result).to_contain_text(paid["tickets"][0]["ticket_id"])
    expect(box).to_have_value("")
    screenshot(page, "24-console-check-in-valid")

    box.fill(payload)
    page.get_by_role("button", name="检票").click()
    expect(result).to_contain_text(re.compile(r"这张票已经检过（.+）"))

    box.fill(payload[:-6] + ("AAAAAA" if not payload.endswith("AAAAAA") else "BBBBBB"))
    page.get_by_role("button", name="检票").click()
    expect(result).to_contain_text("无效的票")
    screenshot(page, "25-console-check-in-forged")


def test_a_buyer_cannot_open_the_console(new_page: Any, server: Server) -> None:
    email, _ = server.new_buyer()
    page = new_page("zh-CN")
    sign_in(page, server, email)
    expect(page.get_by_role("navigation", name="主导航")).not_to_contain_text("管理后台")
    page.goto(server.url("/console"))
    expect(page.get_by_role("alert")).to_have_text("管理后台仅对主办方账号开放。")


def test_an_organiser_rejects_a_refund_with_a_note_and_the_buyer_sees_why(
    new_page: Any, server: Server
) -> None:
    scene = server.on_sale_show(capacity=4)
    email, token = server.new_buyer("Rejected Buyer")
    placed = server.order(token, scene.session_id, scene.area_id, 1)
    server.pay(token, placed["order_id"])
    server.call(
        "POST", f"/api/v1/orders/{placed['order_id']}/refund-requests", {"reason": "生病"}, token
    )

    admin = new_page("en-US")
    sign_in_organiser(admin, server, "/console/refunds")
    request = admin.get_by_role("row", name=re.compile(placed["order_id"]))
    expect(request).to_contain_text("生病")
    request.get_by_label("Reason for rejecting (optional)").fill("Past the refund deadline")
    request.get_by_role("button", name="Reject").click()
    expect(request).to_contain_text("Rejected.")
    expect(request.get_by_role("button", name="Approve refund")).to_have_count(0)

    buyer = new_page("zh-CN")
    sign_in(buyer, server, email)
    buyer.goto(server.url(f"/orders/{placed['order_id']}"))
    expect(buyer.locator(".order-status")).to_have_text("已支付")
    expect(buyer.locator(".refund-state")).to_contain_text("退款申请被拒绝")
    expect(buyer.locator(".refund-state")).to_contain_text("备注：Past the refund deadline")
    # A rejected request can be followed by another.
    buyer.get_by_role("button", name="申请退款").click()
    expect(buyer.get_by_text("退款申请已提交，等待主办方审核。")).to_be_visible()
    expect(buyer.locator(".refund-state").last).to_contain_text("退款申请审核中")


def test_refunding_a_used_ticket_takes_the_organisers_second_explicit_click(
    new_page: Any, server: Server
) -> None:
    scene = server.on_sale_show(capacity=4)
    _, token = server.new_buyer("Early Bird")
    placed = server.order(token, scene.session_id, scene.area_id, 1)
    paid = server.pay(token, placed["order_id"])
    server.admin("POST", "/api/v1/admin/checkins", {"payload": paid["tickets"][0]["qr_payload"]})
    server.call("POST", f"/api/v1/orders/{placed['order_id']}/refund-requests", {}, token)

    admin = new_page("en-US")
    sign_in_organiser(admin, server, "/console/refunds")
    request = admin.get_by_role("row", name=re.compile(placed["order_id"]))
    request.get_by_role("button", name="Approve refund").click()
    expect(request).to_contain_text("1 ticket(s) of this order were already used at the gate")
    anyway = request.get_by_role("button", name="Refund anyway (the seats go back on sale)")
    anyway.click()
    expect(request).to_contain_text("Approved: the order is refunded.")
