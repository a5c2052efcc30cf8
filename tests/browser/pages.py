"""What the browser tests do on many pages: sign in, wait for images, look for unlabelled fields."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import BUYER_PASSWORD, Server, playwright_expect

expect = playwright_expect()


# The sign-in form's words: email, password, log in, log out.
_SIGN_IN_WORDS = {
    "zh": ("邮箱", "密码", "登录", "退出"),
    "en": ("Email", "Password", "Log in", "Log out"),
}


def sign_in(
    page: Any, server: Server, email: str, password: str = BUYER_PASSWORD, language: str = "zh"
) -> None:
    email_label, password_label, log_in, log_out = _SIGN_IN_WORDS[language]
    page.goto(server.url("/login"))
    page.get_by_label(email_label).fill(email)
    page.get_by_label(password_label).fill(password)
    page.get_by_role("button", name=log_in).click()
    expect(page.get_by_role("button", name=log_out)).to_be_visible()


def loaded_images(page: Any, selector: str) -> list[int]:
    """naturalWidth of every image matching ``selector`` once each has finished loading."""
    page.wait_for_function(
        "s => [...document.querySelectorAll(s)].every(img => img.complete)", arg=selector
    )
    widths: list[int] = page.eval_on_selector_all(
        selector, "imgs => imgs.map(img => img.naturalWidth)"
    )
    return widths


def unlabelled_controls(page: Any) -> list[str]:
    """Form controls in <main> that have neither a <label> nor an aria-label."""
    found: list[str] = page.eval_on_selector_all(
        "main input, main select, main textarea",
        """els => els
            .filter(el => el.type !== 'hidden' && el.type !== 'radio')
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map(el => el.outerHTML)""",
    )
    return found


# WCAG 2.x contrast of every visible piece of text against the background it sits on.
_CONTRAST_JS = """
() => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return [0, 0, 0, 1];
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const over = (top, below) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + below[i] * (1 - a)).concat(1);
  };
  const background = (el) => {
    const layers = [];
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
      const bg = parse(getComputedStyle(node).backgroundColor);
      if (bg[3] > 0) layers.push(bg);
      if (bg[3] >= 1) break;
    }
    return layers.reverse().reduce((acc, layer) => over(layer, acc), [255, 255, 255, 1]);
  };
  const failures = [];
  for (const el of document.body.querySelectorAll('*')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    if (el.closest(':disabled, [aria-hidden="true"], .sr-only, option')) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden') continue;
    const bg = background(el);
    const fg = over(parse(style.color), bg);
    const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      const text = el.textContent.trim().slice(0, 30);
      failures.push(`${el.tagName.toLowerCase()}.${el.className} "${text}" ${ratio.toFixed(2)}`);
    }
  }
  return failures;
}
"""


def low_contrast(page: Any) -> list[str]:
    """Visible text below WCAG AA contrast (4.5:1, or 3:1 for large text)."""
    found: list[str] = page.evaluate(_CONTRAST_JS)
    return found
