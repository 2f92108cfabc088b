"""The outbox is indexed by subscription and by seat type, with the status

The outbox keeps every record it ever had (done ones are the audit trail), and its only
index was (status, next_attempt_at): the plan view's count of pending changes and the
sync's read of a subscription's pending records scanned every pending record of every
subscription (in a burst, thousands per request), and the sync's look for a seat type's
waivers and refused charges did the same.

On PostgreSQL the build blocks writes to `outbox` while it runs (it is not CONCURRENTLY:
that cannot run in the migration's transaction): with a large outbox, upgrade at a quiet
moment.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_subscription_status", "outbox", ["subscription_id", "status"])
    op.create_index("ix_outbox_seat_type_status", "outbox", ["seat_type_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_outbox_seat_type_status", table_name="outbox")
    op.drop_index("ix_outbox_subscription_status", table_name="outbox")
