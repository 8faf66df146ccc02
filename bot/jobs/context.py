"""What a job gets: no chat context, just the services, the fire time and a session whose
transaction the runner owns."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import Services


@dataclass
class JobContext:
    services: Services
    at: datetime                  # the fire time, in the company timezone
    session: AsyncSession

    @property
    def today(self) -> date:
        return self.at.date()

    @property
    def config(self):
        return self.services.config
