"""PostgreSQL announces every change to an API key row itself

Web workers keep the keys they verified in a cache that a revocation clears: the
revocation announces itself on the `seatsync_api_keys` channel (LISTEN/NOTIFY) and every
web worker forgets its keys. Until now only `seatsync apikey revoke` announced; a key
revoked or deleted by hand (`UPDATE api_keys SET revoked_at = now()`, as an operator in a
hurry would) went unheard and kept working from the caches. A trigger now announces every
UPDATE and DELETE of a key row, however it is made, in the changing transaction: delivered
at its commit, never on a rollback. Keys change only when revoked, so it costs nothing on
the request path.

SQLite has no channel (its web workers never cache keys): nothing to do there.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The channel is connector.adapters.key_revocations.CHANNEL, spelled here as it was when
# this migration was written (a migration does not follow later code).
CREATE_FUNCTION = """
CREATE FUNCTION seatsync_announce_api_key_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('seatsync_api_keys', OLD.id);
    RETURN NULL;
END
$$
"""

CREATE_TRIGGER = """
CREATE TRIGGER api_keys_announce_change
AFTER UPDATE OR DELETE ON api_keys
FOR EACH ROW EXECUTE FUNCTION seatsync_announce_api_key_change()
"""


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(CREATE_FUNCTION)
    op.execute(CREATE_TRIGGER)


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER api_keys_announce_change ON api_keys")
    op.execute("DROP FUNCTION seatsync_announce_api_key_change()")
