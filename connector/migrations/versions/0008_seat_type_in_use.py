"""Seat types keep the number of licences in use on their row

The holders taking a licence were counted on every seat change (one more statement inside
the seat type's lock); the count now lives on the seat type row, kept by the one writer of
seat changes (`record_change`) under that same lock.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("seat_types", schema=None) as batch_op:
        batch_op.add_column(sa.Column("in_use", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE seat_types SET in_use = (SELECT count(*) FROM holders "
        "WHERE holders.seat_type_id = seat_types.id AND holders.occupies_licence)"
    )


def downgrade() -> None:
    with op.batch_alter_table("seat_types", schema=None) as batch_op:
        batch_op.drop_column("in_use")
