"""The one error a bad configuration raises. Its own module because both ``bot.config`` and the
policy sections it loads (``bot.policy``) raise it, and config imports policy."""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, naming the key and what is wrong with it."""
