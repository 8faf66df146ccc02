"""Switches the platform adapters on from configuration (WeCom, DingTalk)."""
from __future__ import annotations

from aiohttp import web


def install(app: web.Application, state) -> None:
    cfg = state.config
    if cfg.wecom.enabled:
        from bot.channels import wecom
        wecom.install(app, state)
    if cfg.dingtalk.enabled:
        from bot.channels import dingtalk
        dingtalk.install(app, state)
