"""The bot's own web pages: the dashboard (server-rendered, no build step), signed report
downloads and the Prometheus /metrics endpoint. ``bot.web.dashboard.install`` adds them all."""
