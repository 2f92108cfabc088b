"""The outbox is indexed by subscription and by seat type, with the status

The outbox keeps every record it ever had (done ones are the audit trail), and its only
index was (status, next_attempt_at): the plan view's count of pending changes and the
sync's read of a subscription's pending records scanned every pending record of every
subscription (in a burst, thousands per request), and the sync's look for a seat type's
waivers and refused charges did the same.

On PostgreSQL the indexes are built CONCURRENTLY, so seat changes keep writing to the
outbox while they build, however large it is. That cannot run inside a transaction: it
runs in an autocommit block, after the migrations before it have committed.

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

INDEXES = {
    "ix_outbox_subscription_status": ["subscription_id", "status"],
    "ix_outbox_seat_type_status": ["seat_type_id", "status"],
}


def upgrade() -> None:
    context = op.get_context()
    if context.dialect.name != "postgresql":  # SQLite: one transaction, all or nothing
        for name, columns in INDEXES.items():
            op.create_index(name, "outbox", columns)
        return
    with context.autocommit_block():
        for name, columns in INDEXES.items():
            # An interrupted concurrent build leaves an invalid index of this name behind
            # (and the migration unstamped): build it again from scratch.
            op.drop_index(name, table_name="outbox", postgresql_concurrently=True, if_exists=True)
            op.create_index(name, "outbox", columns, postgresql_concurrently=True)


def downgrade() -> None:
    context = op.get_context()
    if context.dialect.name != "postgresql":
        for name in reversed(INDEXES):
            op.drop_index(name, table_name="outbox")
        return
    with context.autocommit_block():  # a plain DROP INDEX would block the outbox's writes too
        for name in reversed(INDEXES):
            op.drop_index(name, table_name="outbox", postgresql_concurrently=True, if_exists=True)
