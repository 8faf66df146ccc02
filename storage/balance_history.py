"""What lowered each invoice's balance, and on which day: the base of a late fee computed on the
daily balance (domain/late_fees.contract_fee). Payments count on the day they were received
(their allocations' ``applied_on``), write-offs on the day they took effect."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Allocation, WriteOff


async def reductions(session: AsyncSession, receivable_ids: list[int]) -> dict[int, list[tuple[date, Decimal]]]:
    """invoice id → [(day, amount)] of its allocations and approved write-offs."""
    out: dict[int, list[tuple[date, Decimal]]] = {i: [] for i in receivable_ids}
    for i in range(0, len(receivable_ids), 500):
        ids = receivable_ids[i:i + 500]
        for rid, day, amount in await session.execute(select(
                Allocation.receivable_id, Allocation.applied_on, Allocation.amount).where(Allocation.receivable_id.in_(ids))):
            out[rid].append((day, amount))
        for rid, day, amount in await session.execute(select(
                WriteOff.receivable_id, WriteOff.written_off_on, WriteOff.amount).where(
                WriteOff.receivable_id.in_(ids), WriteOff.status == "approved", WriteOff.written_off_on.is_not(None))):
            out[rid].append((day, amount))
    return out
