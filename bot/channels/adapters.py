"""The registry's installer: every platform registered and switched on in the configuration
gets its channel installed on the app (routes, client sessions, background clients).

Importing a channel module registers its platform (``bot.core.channel.register``). The order of
the imports below is the order of preference for reaching a person who is known on several
platforms; a new platform is one line here, its module in ``bot/channels/`` and its section in
``bot/config.py`` (docs/channels.md).
"""
from __future__ import annotations

from bot.channels import wecom, dingtalk, feishu, local  # noqa: F401  (registers, in order of preference)
from bot.core.channel import registry


def install(app, state) -> None:
    for platform in registry.enabled(state.config):
        state.channel_health.add(platform.name)
        channel = platform.install(app, state)
        state.channels[platform.name] = channel
