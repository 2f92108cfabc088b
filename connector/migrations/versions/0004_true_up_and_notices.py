"""True-ups, over-allocation notices, team licences, holder detail in the ledger

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("seat_types", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("billed_per", sa.String(length=8), nullable=False, server_default="user")
        )
        batch_op.add_column(
            sa.Column("peak_assigned", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("true_up_period_start", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("true_up_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("true_up_months", sa.Integer(), nullable=False, server_default="12")
        )
        batch_op.add_column(
            sa.Column(
                "over_allocation_alerted", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder_changes", sa.JSON(), nullable=True))

    op.create_table(
        "true_ups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("seat_type_id", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("peak_assigned", sa.Integer(), nullable=False),
        sa.Column("licences", sa.Integer(), nullable=False),
        sa.Column("floor", sa.Integer(), nullable=False),
        sa.Column("assigned", sa.Integer(), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("licences_after", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_invoice_item_id", sa.String(length=255), nullable=True),
        sa.Column("ledger_entry_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("invoiced_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["ledger_entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_true_ups_ledger_entry_id_ledger_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["seat_type_id"], ["seat_types.id"], name=op.f("fk_true_ups_seat_type_id_seat_types")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_true_ups_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_true_ups")),
        sa.UniqueConstraint("seat_type_id", "due_at", name=op.f("uq_true_ups_seat_type_id")),
    )
    with op.batch_alter_table("true_ups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_true_ups_status_next", ["status", "next_attempt_at"], unique=False
        )

    op.create_table(
        "notice_settings",
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("callback_url", sa.String(length=2048), nullable=True),
        sa.Column("callback_secret", sa.String(length=80), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_notice_settings_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_notice_settings")),
    )

    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("seat_type_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=2048), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["seat_type_id"], ["seat_types.id"], name=op.f("fk_notices_seat_type_id_seat_types")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_notices_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.create_index("ix_notices_status_next", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index("ix_notices_status_next")
    op.drop_table("notices")
    op.drop_table("notice_settings")
    with op.batch_alter_table("true_ups", schema=None) as batch_op:
        batch_op.drop_index("ix_true_ups_status_next")
    op.drop_table("true_ups")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_column("holder_changes")
    with op.batch_alter_table("seat_types", schema=None) as batch_op:
        batch_op.drop_column("over_allocation_alerted")
        batch_op.drop_column("true_up_months")
        batch_op.drop_column("true_up_at")
        batch_op.drop_column("true_up_period_start")
        batch_op.drop_column("peak_assigned")
        batch_op.drop_column("billed_per")
