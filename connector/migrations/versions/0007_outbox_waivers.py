"""Outbox waivers: a written-off charge is billed by Stripe and credited back at once

A waiver record credits exactly what the write-off record it names (`waives_outbox_id`)
charged, so Stripe's own bookkeeping counts the seats as billed (flexible billing mode
credits what was billed) while the customer pays nothing for them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("waives_outbox_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("waives_outbox_id")
