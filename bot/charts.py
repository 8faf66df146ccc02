"""The aging chart (PNG). Chinese labels need a CJK font: we look for one that the system has
(the Makefile installs Debian's fonts-wqy-microhei when it can) and say so when there is none."""
from __future__ import annotations

import io
import logging
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # no display on servers
from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bot.render import environment, render  # noqa: E402
from storage.aging import AgingReport  # noqa: E402

log = logging.getLogger(__name__)
CJK_FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/System/Library/Fonts/PingFang.ttc",
]


@lru_cache(maxsize=1)
def cjk_font() -> font_manager.FontProperties | None:
    for path in CJK_FONT_CANDIDATES:
        if Path(path).exists():
            font_manager.fontManager.addfont(path)
            return font_manager.FontProperties(fname=path)
    for f in font_manager.fontManager.ttflist:
        if any(k in f.name for k in ("WenQuanYi", "Noto Sans CJK", "Source Han", "SimHei", "Microsoft YaHei")):
            return font_manager.FontProperties(fname=f.fname)
    log.warning("charts: no CJK font found; Chinese labels will not render (install fonts-wqy-microhei)")
    return None


def bucket_label(label: str) -> str:
    return str(environment().globals["fmt"].bucket(label))


def aging_chart(report: AgingReport, width_px: int = 800, height_px: int = 450) -> bytes:
    """A bar chart of the open balance per bucket, in 万元, with each bar's share."""
    total = report.total
    return _bar_chart(render("aging/chart_title.j2", report=report), render("aging/chart_ylabel.j2"),
                      tuple(bucket_label(b.label) for b in report.buckets),
                      tuple(float(b.amount / 10000) for b in report.buckets),   # plotting only; text stays exact
                      tuple(f"{b.share(total)}%" for b in report.buckets), width_px, height_px)


@lru_cache(maxsize=32)
def _bar_chart(title: str, ylabel: str, labels: tuple[str, ...], values: tuple[float, ...],
               notes: tuple[str, ...], width_px: int, height_px: int) -> bytes:
    """Drawn once per distinct picture: plotting holds the interpreter for 0.2-0.4 s, and the same
    figures are asked for again and again (finance's /aging every few seconds, a group's members)."""
    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    ax = fig.add_subplot()
    font = cjk_font()
    kw = {"fontproperties": font} if font else {}
    colors = ["#4caf50", "#ffc107", "#ff9800", "#f44336", "#b71c1c", "#6d0000", "#3e0000"][:len(values)]
    bars = ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, **kw)
    ax.set_ylabel(ylabel, **kw)
    ax.set_title(title, **kw)
    for bar, note in zip(bars, notes):
        ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
