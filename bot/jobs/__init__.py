"""Scheduled jobs: plain ``async def job(ctx) -> str`` functions, listed in ``registry.JOBS``."""
