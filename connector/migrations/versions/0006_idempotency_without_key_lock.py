"""Stored idempotent requests no longer reference api_keys by foreign key

Every keyed request inserted a row referencing its API key, and PostgreSQL took FOR KEY
SHARE on that one api_keys row in every such transaction: concurrent requests of one key
queued on it (multixact updates of a single row). Keys are never deleted (only revoked),
so the reference cannot dangle.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotent_requests", schema=None) as batch_op:
        batch_op.drop_constraint("fk_idempotent_requests_api_key_id_api_keys", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("idempotent_requests", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_idempotent_requests_api_key_id_api_keys", "api_keys", ["api_key_id"], ["id"]
        )
