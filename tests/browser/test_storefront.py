"""The storefront in a real browser: what a buyer sees and does, from the home page to a QR."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.browser.conftest import (
    BUYER_PASSWORD,
    ApiError,
    Server,
    playwright_expect,
    screenshot,
)
from tests.browser.pages import (
    loaded_images,
    low_contrast,
    sign_in,
    unlabelled_controls,
)

expect = playwright_expect()

JAY = "周杰伦 2026 世界巡回演唱会"


def test_a_buyer_goes_from_the_home_page_to_two_ticket_qr_codes(
    new_page: Any, server: Server
) -> None:
    page = new_page("zh-CN")
    page.goto(server.url("/"))
    expect(page.get_by_role("heading", name="演出", level=1)).to_be_visible()
    expect(page.locator(".count")).to_have_text(re.compile(r"共 \d+ 场演出"))

    page.get_by_label("城市").select_option("上海")
    expect(page).to_have_url(re.compile(r"city=%E4%B8%8A%E6%B5%B7"))
    expect(page.get_by_role("link", name=JAY)).to_be_visible()
    kickers = page.locator(".card .kicker").all_inner_texts()
    assert kickers
    assert all("上海" in text for text in kickers), kickers
    assert unlabelled_controls(page) == []
    assert low_contrast(page) == []
    screenshot(page, "01-home-filtered-shanghai")

    page.get_by_role("link", name=JAY).click()
    expect(page.get_by_role("heading", name=JAY, level=1)).to_be_visible()
    vip_a = page.get_by_role("radio", name=re.compile(r"^VIP A区"))
    expect(page.locator("label.area", has_text="VIP A区").first).to_contain_text("¥1,280")
    expect(page.locator("label.area", has_text="VIP A区").first).to_contain_text(
        re.compile(r"余 \d+ 张")
    )
    expect(page.locator(".live")).to_contain_text("余票每 5 秒自动更新")
    vip_a.check()
    page.get_by_label("数量").fill("2")
    expect(page.locator(".total")).to_have_text("合计：¥2,560")
    assert low_contrast(page) == []
    screenshot(page, "02-show-page")

    page.get_by_role("button", name="立即购买").click()
    expect(page.get_by_text("请先登录再购票")).to_be_visible()
    page.get_by_role("main").get_by_role("link", name="注册").click()
    expect(page.get_by_role("heading", name="注册", level=1)).to_be_visible()
    page.get_by_label("姓名").fill("Alice Wang")
    page.get_by_label("邮箱").fill(f"alice-{page.evaluate('Date.now()')}@example.com")
    page.get_by_label("密码").fill("SecurePass123")
    assert unlabelled_controls(page) == []
    page.get_by_role("button", name="注册").click()

    # Back on the show with the choice kept: one click buys.
    expect(page.get_by_role("heading", name=JAY, level=1)).to_be_visible()
    expect(page.get_by_text("已登录：Alice Wang")).to_be_visible()
    expect(vip_a).to_be_checked()
    expect(page.get_by_label("数量")).to_have_value("2")
    page.get_by_role("button", name="立即购买").click()

    expect(page.get_by_role("heading", name=JAY, level=1)).to_be_visible()
    expect(page.locator(".order-status")).to_have_text("待支付")
    expect(page.get_by_role("timer")).to_have_text(
        re.compile(r"请在 1[45]:\d\d 内完成支付，超时订单将自动取消。")
    )
    expect(page.get_by_label("支付令牌（沙箱）")).to_have_value("alipay_token_demo")
    expect(page.locator(".facts")).to_contain_text("VIP A区")
    assert unlabelled_controls(page) == []
    assert low_contrast(page) == []
    screenshot(page, "03-order-awaiting-payment")

    page.get_by_role("button", name="支付 ¥2,560").click()
    expect(page.get_by_text("支付成功，电子票已出票。")).to_be_visible()
    expect(page.locator(".order-status")).to_have_text("已支付")
    expect(page.get_by_role("img", name=re.compile("入场二维码"))).to_have_count(2)
    widths = loaded_images(page, "img.qr")
    assert len(widths) == 2
    assert all(width > 0 for width in widths), widths
    expect(page.locator(".ticket .seat").first).to_contain_text("有效")
    assert low_contrast(page) == []
    screenshot(page, "04-order-paid-e-tickets")

    page.get_by_role("navigation", name="主导航").get_by_role("link", name="我的订单").click()
    expect(page.get_by_role("heading", name="我的订单", level=1)).to_be_visible()
    card = page.locator(".order-card", has_text=JAY)
    expect(card).to_contain_text("VIP A区 × 2")
    expect(card).to_contain_text("已支付")
    screenshot(page, "05-my-orders")


def test_a_buyer_can_cancel_an_unpaid_order_and_its_seats_come_back(
    new_page: Any, server: Server
) -> None:
    scene = server.on_sale_show(capacity=5)
    email, _ = server.new_buyer()
    page = new_page("zh-CN")
    sign_in(page, server, email)
    page.goto(server.url(f"/shows/{scene.show_id}"))
    page.get_by_role("radio", name=re.compile("^Floor")).check()
    page.get_by_label("数量").fill("3")
    page.get_by_role("button", name="立即购买").click()
    expect(page.locator(".order-status")).to_have_text("待支付")

    page.get_by_role("button", name="取消订单").click()
    expect(page.get_by_text("确定要取消这个订单吗？座位将被释放。")).to_be_visible()
    page.get_by_role("button", name="确认取消").click()

    expect(page.get_by_text("订单已取消。")).to_be_visible()
    expect(page.locator(".order-status")).to_have_text("已取消")
    expect(page.locator(".facts")).to_contain_text("由你取消")
    expect(page.get_by_role("button", name=re.compile("^支付"))).to_have_count(0)
    availability = server.call("GET", f"/api/v1/sessions/{scene.session_id}/availability")
    assert availability["seat_areas"][0]["available"] == 5


def test_a_declined_sandbox_payment_is_explained_and_the_order_stays_payable(
    new_page: Any, server: Server
) -> None:
    scene = server.on_sale_show(capacity=5, price=99.5)
    email, _ = server.new_buyer()
    page = new_page("en-US")
    page.goto(server.url("/login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(BUYER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    page.goto(server.url(f"/shows/{scene.show_id}"))
    page.get_by_role("radio", name=re.compile("^Floor")).check()
    page.get_by_role("button", name="Buy now").click()
    expect(page.locator(".order-status")).to_have_text("Awaiting payment")

    page.get_by_label("Payment token (sandbox)").fill("decline_insufficient_funds")
    page.get_by_role("button", name=re.compile(r"^Pay CN¥99\.50")).click()

    alert = page.get_by_role("alert")
    expect(alert).to_have_text(
        "The payment was declined (insufficient_funds). The order can still be paid: "
        "try another way."
    )
    expect(page.locator(".order-status")).to_have_text("Awaiting payment")
    page.get_by_label("Payment method").select_option("wechat_pay")
    page.get_by_label("Payment token (sandbox)").fill("wechat_pay_token_demo")
    page.get_by_role("button", name=re.compile(r"^Pay")).click()
    expect(page.locator(".order-status")).to_have_text("Paid")
    widths = loaded_images(page, "img.qr")
    assert len(widths) == 1
    assert all(width > 0 for width in widths), widths


# -- the rush ------------------------------------------------------------------------------


def test_ordering_more_seats_than_are_left_says_how_many_remain_then_sold_out(
    new_page: Any, server: Server
) -> None:
    scene = server.on_sale_show(capacity=3)
    email, _ = server.new_buyer()
    page = new_page("zh-CN")
    sign_in(page, server, email)
    page.goto(server.url(f"/shows/{scene.show_id}"))
    area = page.locator("label.area", has_text="Floor")
    expect(area).to_contain_text("余 3 张")
    page.get_by_role("radio", name=re.compile("^Floor")).check()
    page.get_by_label("数量").fill("2")

    # Others buy while this page still shows three seats.
    _, rival = server.new_buyer("Rival")
    server.order(rival, scene.session_id, scene.area_id, 2)
    page.get_by_role("button", name="立即购买").click()

    message = page.locator(".buy .msg")
    expect(message).to_have_text("余票不足：只剩 1 张，你选择了 2 张。")
    screenshot(page, "06-rush-not-enough-seats")

    _, last = server.new_buyer("Last")
    server.order(last, scene.session_id, scene.area_id, 1)
    page.get_by_label("数量").fill("1")
    page.get_by_role("button", name="立即购买").click()
    expect(message).to_have_text("已售罄，这个区域的票已经卖完了。")
    # The live availability catches up on its own: the area is marked sold out.
    expect(area).to_contain_text("已售罄")
    expect(page.get_by_role("radio", name=re.compile("^Floor"))).to_be_disabled()
    assert "insufficient_inventory" not in message.inner_text()
    assert low_contrast(page) == []
    screenshot(page, "07-rush-sold-out")


def test_a_full_queue_is_explained_with_when_to_retry(new_page: Any, server: Server) -> None:
    scene = server.on_sale_show(capacity=10)
    email, _ = server.new_buyer()
    page = new_page("zh-CN")
    sign_in(page, server, email)
    problem = {
        "type": "https://marquee.dev/problems/overloaded",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "The booking service is at capacity (queue full); retry shortly.",
        "code": "overloaded",
        "retry_after": 3,
    }
    page.route(
        "**/api/v1/orders",
        lambda route: route.fulfill(
            status=503,
            headers={"Retry-After": "3", "Content-Type": "application/problem+json"},
            body=json.dumps(problem),
        ),
    )
    page.goto(server.url(f"/shows/{scene.show_id}"))
    page.get_by_role("radio", name=re.compile("^Floor")).check()
    buy = page.get_by_role("button", name="立即购买")
    buy.click()

    message = page.locator(".buy .msg")
    expect(message).to_have_text(re.compile(r"排队人数已满，系统繁忙，请在 [1-3] 秒后重试。"))
    expect(buy).to_be_disabled()
    assert "queue full" not in message.inner_text()
    expect(message).to_have_text("现在可以重试了。", timeout=6000)
    expect(buy).to_be_enabled()


def test_a_rate_limited_visitor_is_told_to_retry_in_n_seconds_and_the_page_recovers(
    new_page: Any, limited_server: Server
) -> None:
    page = new_page("en-US")
    # The first page load spends the burst of two (the list and the filter choices).
    page.goto(limited_server.url("/"))
    expect(page.locator(".count")).to_have_text(re.compile(r"\d+ shows"))

    page.get_by_label("Search").fill("周杰伦")
    page.get_by_role("button", name="Search").click()

    message = page.locator(".msg")
    expect(message).to_have_text(re.compile(r"^Too many requests\. Retry in ([1-9]|10) s\.$"))
    expect(page.get_by_role("button", name="Search")).to_be_disabled()
    assert low_contrast(page) == []
    screenshot(page, "08-rush-rate-limited")
    assert "rate_limited" not in message.inner_text()
    assert "{" not in message.inner_text()

    # When the wait is over the list loads by itself.
    expect(page.get_by_role("link", name=JAY)).to_be_visible(timeout=25_000)
    expect(page.get_by_role("button", name="Search")).to_be_enabled()


# -- language, phones, keyboard ------------------------------------------------------------


def test_english_browsers_get_english_and_the_switch_changes_the_language(
    new_page: Any, server: Server
) -> None:
    page = new_page("en-US")
    page.goto(server.url("/"))
    expect(page.get_by_role("heading", name="Shows", level=1)).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")

    page.get_by_role("button", name="切换到中文").click()
    expect(page.get_by_role("heading", name="演出", level=1)).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.reload()
    expect(page.get_by_role("heading", name="演出", level=1)).to_be_visible()


def test_the_pages_fit_a_phone_screen(new_page: Any, server: Server) -> None:
    page = new_page("zh-CN", width=390, height=844, mobile=True)
    overflow = "document.documentElement.scrollWidth - window.innerWidth"
    page.goto(server.url("/"))
    expect(page.locator(".card").first).to_be_visible()
    assert page.evaluate(overflow) <= 0
    screenshot(page, "09-phone-home")

    page.goto(server.url("/shows/show-5678"))
    expect(page.get_by_role("heading", name=JAY, level=1)).to_be_visible()
    assert page.evaluate(overflow) <= 0
    buy = page.get_by_role("button", name="立即购买").bounding_box()
    assert buy is not None
    assert buy["x"] >= 0
    assert buy["x"] + buy["width"] <= 390
    screenshot(page, "10-phone-show")

    scene = server.on_sale_show(capacity=6, price=380)
    email, token = server.new_buyer("手机用户")
    placed = server.order(token, scene.session_id, scene.area_id, 2)
    server.pay(token, placed["order_id"])
    sign_in(page, server, email)
    page.goto(server.url(f"/orders/{placed['order_id']}"))
    expect(page.locator(".order-status")).to_have_text("已支付")
    widths = loaded_images(page, "img.qr")
    assert len(widths) == 2
    assert all(width > 0 for width in widths), widths
    assert page.evaluate(overflow) <= 0
    screenshot(page, "11-phone-order-tickets")


def test_the_keyboard_reaches_the_skip_link_and_focus_is_visible(
    new_page: Any, server: Server
) -> None:
    page = new_page("zh-CN")
    page.goto(server.url("/shows/show-5678"))
    expect(page.get_by_role("heading", name=JAY, level=1)).to_be_visible()

    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="跳到主要内容")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()

    # Tab on to the first session choice and pick an area with the arrow keys.
    page.get_by_role("radio", name=re.compile("8月15日")).first.focus()
    page.keyboard.press("Tab")
    expect(page.get_by_role("radio", name=re.compile("^VIP A区"))).to_be_focused()
    outline = page.evaluate(
        "getComputedStyle(document.activeElement.closest('label')).outlineStyle"
    )
    assert outline != "none"
    page.keyboard.press("Space")
    expect(page.get_by_role("radio", name=re.compile("^VIP A区"))).to_be_checked()
    expect(page.locator(".total")).to_have_text("合计：¥1,280")


# -- the session -------------------------------------------------------------------------


def stored_session(page: Any) -> dict[str, Any]:
    stored: dict[str, Any] = page.evaluate("JSON.parse(localStorage.getItem('marquee.session'))")
    return stored


def test_a_refused_access_token_is_refreshed_quietly_and_logout_ends_the_session(
    new_page: Any, server: Server
) -> None:
    email, _ = server.new_buyer("Quiet Refresh")
    page = new_page("zh-CN")
    sign_in(page, server, email)
    first = stored_session(page)

    # The gateway refuses the access token (as after it expires); the refresh token is good.
    page.evaluate(
        """() => {
            const s = JSON.parse(localStorage.getItem('marquee.session'));
            s.access_token = 'not.a.token';
            localStorage.setItem('marquee.session', JSON.stringify(s));
        }"""
    )
    page.goto(server.url("/orders"))
    expect(page.get_by_role("heading", name="我的订单", level=1)).to_be_visible()
    expect(page.get_by_text("你还没有订单。")).to_be_visible()
    second = stored_session(page)
    assert second["access_token"] != "not.a.token"
    assert second["refresh_token"] != first["refresh_token"]

    # A token about to expire is refreshed before the call instead of after a 401.
    page.evaluate(
        """() => {
            const s = JSON.parse(localStorage.getItem('marquee.session'));
            s.access_expires_at = Date.now();
            localStorage.setItem('marquee.session', JSON.stringify(s));
        }"""
    )
    page.reload()
    expect(page.get_by_text("你还没有订单。")).to_be_visible()
    third = stored_session(page)
    assert third["refresh_token"] != second["refresh_token"]
    assert third["access_expires_at"] > page.evaluate("Date.now()") + 60_000

    page.get_by_role("button", name="退出").click()
    nav = page.get_by_role("navigation", name="主导航")
    expect(nav.get_by_role("link", name="登录")).to_be_visible()
    expect(nav).not_to_contain_text("我的订单")
    assert page.evaluate("localStorage.getItem('marquee.session')") is None
    with pytest.raises(ApiError) as refused:
        server.call("POST", "/api/v1/auth/refresh", {"refresh_token": third["refresh_token"]})
    assert refused.value.status == 401


# -- what a visitor sees without asking ------------------------------------------------------


def test_the_seeds_show_leads_the_home_page(new_page: Any, server: Server) -> None:
    page = new_page("zh-CN")
    page.goto(server.url("/"))
    expect(page.get_by_role("link", name=JAY)).to_be_visible()


def test_a_list_that_fits_on_one_page_prints_nothing_stray(new_page: Any, server: Server) -> None:
    page = new_page("zh-CN")
    page.goto(server.url("/?city=上海&category=演唱会"))
    expect(page.get_by_role("link", name=JAY)).to_be_visible()
    expect(page.get_by_role("navigation", name="分页")).to_have_count(0)
    expect(page.get_by_role("main")).not_to_contain_text("null")


def test_an_unknown_page_is_the_sites_not_found_page(new_page: Any, server: Server) -> None:
    page = new_page("zh-CN")
    answer = page.goto(server.url("/about"))
    assert answer is not None
    assert answer.status == 404
    expect(page.get_by_role("heading", name="页面不存在", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="主导航")).to_be_visible()


def test_session_times_are_the_venues_clock_with_its_zone_wherever_the_buyer_is(
    new_page: Any, server: Server
) -> None:
    # The test show's session starts 2031-06-01 11:30 UTC: 19:30 in Shanghai, 12:30 in London.
    scene = server.on_sale_show(capacity=5)
    email, token = server.new_buyer()
    placed = server.order(token, scene.session_id, scene.area_id, 1)
    page = new_page("en-GB")  # a browser in London
    sign_in(page, server, email, language="en")

    page.goto(server.url(f"/shows/{scene.show_id}"))
    choice = page.locator("label.choice").first
    expect(choice).to_contain_text("19:30")
    expect(choice).to_contain_text("GMT+8")

    page.goto(server.url(f"/orders/{placed['order_id']}"))
    facts = page.locator(".facts")
    expect(facts).to_contain_text("19:30")
    expect(facts).to_contain_text("GMT+8")

    page.goto(server.url("/orders"))
    card = page.locator(".order-card", has_text=scene.title)
    expect(card).to_contain_text("19:30")
    expect(card).to_contain_text("GMT+8")


def test_the_api_docs_work_with_no_internet(new_page: Any, server: Server) -> None:
    page = new_page("en-GB")
    elsewhere: list[str] = []

    def offline(route: Any) -> None:
        if route.request.url.startswith(server.base):
            route.continue_()
        else:
            # ReDoc shows its maker's logo from their CDN: without internet the logo is
            # missing, nothing else. Scripts, styles and data must all come from Marquee.
            if route.request.resource_type != "image":
                elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    page.goto(server.url("/docs"))
    expect(page.get_by_text("/api/v1/orders").first).to_be_visible()
    page.goto(server.url("/redoc"))
    expect(page.get_by_text("/api/v1/orders").first).to_be_visible()
    assert elsewhere == []
