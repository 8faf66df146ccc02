"""Every user-visible word comes from a jinja2 template under bot/templates (Chinese by default).

StrictUndefined: a template that names data the handler did not give fails in tests, not in chat.
"""
from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined

from domain.money import format_money


def yuan(value) -> str:
    """12345.6 → 12,345.60 (exact: Decimal in, string out)."""
    if value is None:
        return "-"
    d = Decimal(value).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"{d:,.2f}"


def money(value, currency: str | None = "CNY") -> str:
    """An amount with its currency's own symbol (¥, US$, €, HK$ …): domain.money.format_money."""
    return format_money(None if value is None else Decimal(value), currency)


def pct(value, places: int = 1) -> str:
    if value is None:
        return "-"
    q = Decimal(1).scaleb(-places)
    return f"{Decimal(value).quantize(q, ROUND_HALF_UP)}%"


def ymd(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        value = value.date()
    return value.isoformat()


def hm(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%m-%d %H:%M")


# what makes markdown of a person's words: a link, bold, a heading or quote, a <@mention>, a <font>
# tag, code. Swapped for the full-width sign that reads the same and does nothing (platform-neutral:
# the chat platforms' markdown dialects honour no backslash escape alike)
_MARKDOWN_SIGNS = str.maketrans({"<": "＜", ">": "＞", "[": "［", "]": "］", "*": "＊", "`": "｀", "#": "＃",
                                 "_": "＿", "~": "～", "|": "｜", "\\": "＼", "!": "！"})


def md_text(value) -> str:
    """Text a person wrote, shown in markdown that someone else reads: on one line (a line break
    could start a heading, a quote or a fake list item) and with markdown's signs made inert, so
    ``**[点此登记回款](http://…)**``, ``<@all>`` or ``<font …>`` are shown, not obeyed."""
    if value is None:
        return ""
    return " ".join(str(value).split()).translate(_MARKDOWN_SIGNS)


@lru_cache(maxsize=1)
def environment() -> Environment:
    # auto_reload=False: templates ship with the code, and checking each one's mtime on every
    # get_template cost ~30 stat() calls per chat message (measured under the webhook benchmark)
    env = Environment(loader=PackageLoader("bot", "templates"), undefined=StrictUndefined, auto_reload=False,
                      autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    # md_text: every person's words shown to another person in markdown go through it
    env.filters.update(yuan=yuan, money=money, pct=pct, ymd=ymd, hm=hm, md_text=md_text)
    # _fmt.j2 holds the wording of dates, buckets and outcomes, shared by every template
    env.globals["fmt"] = env.get_template("_fmt.j2").module
    return env


def render(template: str, **data) -> str:
    return environment().get_template(template).render(**data).strip()


def html_environment() -> Environment:
    """Autoescaping environment for the web pages (dashboard, local chat)."""
    env = Environment(loader=PackageLoader("bot", "templates"), undefined=StrictUndefined, autoescape=True)
    env.filters.update(yuan=yuan, money=money, pct=pct, ymd=ymd, hm=hm)
    return env
