"""Out-of-band payments, bank confirmations, refunds of credit, payment-term extensions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credit_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reference", sa.String(length=255), nullable=True))

    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("transfer_reference", sa.String(length=255), nullable=False),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("applied", sa.BigInteger(), nullable=False),
        sa.Column("excess", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pay_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("credit_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stripe_balance_transaction_id", sa.String(length=255), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("transfer_reference", name=op.f("uq_payments_transfer_reference")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payments_stripe_customer_id"), ["stripe_customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_payments_stripe_invoice_id"), ["stripe_invoice_id"], unique=False
        )

    op.create_table(
        "bank_confirmations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("document_kind", sa.String(length=32), nullable=False),
        sa.Column("account_number_masked", sa.String(length=64), nullable=False),
        sa.Column("account_last4", sa.String(length=4), nullable=False),
        sa.Column("account_holder", sa.String(length=255), nullable=False),
        sa.Column("bank_name", sa.String(length=255), nullable=True),
        sa.Column("verified_by", sa.String(length=255), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_confirmations")),
        sa.UniqueConstraint(
            "stripe_customer_id",
            "reference",
            name=op.f("uq_bank_confirmations_stripe_customer_id"),
        ),
    )

    op.create_table(
        "refunds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=False),
        sa.Column("open_for_customer", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("bank_confirmation_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stripe_balance_transaction_id", sa.String(length=255), nullable=True),
        sa.Column("instructed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_by", sa.String(length=255), nullable=True),
        sa.Column("bank_reference", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["bank_confirmation_id"],
            ["bank_confirmations.id"],
            name=op.f("fk_refunds_bank_confirmation_id_bank_confirmations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("open_for_customer", name=op.f("uq_refunds_open_for_customer")),
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_refunds_stripe_customer_id"), ["stripe_customer_id"], unique=False
        )

    op.create_table(
        "invoice_extensions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=False),
        sa.Column("extended_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_extensions")),
    )
    with op.batch_alter_table("invoice_extensions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_invoice_extensions_status_until", ["status", "extended_until"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_invoice_extensions_stripe_invoice_id"),
            ["stripe_invoice_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("invoice_extensions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_extensions_stripe_invoice_id"))
        batch_op.drop_index("ix_invoice_extensions_status_until")
    op.drop_table("invoice_extensions")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_stripe_customer_id"))
    op.drop_table("refunds")
    op.drop_table("bank_confirmations")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_stripe_invoice_id"))
        batch_op.drop_index(batch_op.f("ix_payments_stripe_customer_id"))
    op.drop_table("payments")
    with op.batch_alter_table("credit_entries", schema=None) as batch_op:
        batch_op.drop_column("reference")
