"""Who is signed in to the dashboard. The session cookie (Flask's, signed with the app's
secret key, HTTP-only, SameSite=Lax) holds only the API key's id; the key is read again on
every request, so revoking it or taking its scopes away ends the sign-in at once."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g, session
from sqlalchemy.orm import Session

from connector.adapters.models import ApiKey
from connector.services.apikeys import Scope, find_key
from connector.services.seats import Actor

# A key with either scope may sign in and read every page; buttons that change something
# need ops:write.
SIGN_IN_SCOPES = {Scope.OPS_WRITE.value, Scope.BILLING_READ.value}
SESSION_KEY_ID = "api_key_id"


@dataclass(frozen=True, slots=True)
class Operator:
    key_id: str
    name: str
    scopes: tuple[str, ...]

    @property
    def can_write(self) -> bool:
        return Scope.OPS_WRITE.value in self.scopes

    @property
    def actor(self) -> Actor:
        return Actor(key_id=self.key_id, name=self.name)


def _operator(key: ApiKey | None) -> Operator | None:
    if key is None or key.revoked_at is not None or not SIGN_IN_SCOPES & set(key.scopes):
        return None
    return Operator(key.id, key.name, tuple(sorted(key.scopes)))


def check_secret(db: Session, secret: str) -> Operator | None:
    """The operator an API key signs in, or None (unknown, revoked, or no ops scope)."""
    return _operator(find_key(db, secret.strip())) if secret.strip() else None


def signed_in(db: Session) -> Operator | None:
    """The operator of this request's session, if it still may use the dashboard."""
    key_id = session.get(SESSION_KEY_ID)
    if not isinstance(key_id, str):
        return None
    return _operator(db.get(ApiKey, key_id))


def start_session(operator: Operator) -> None:
    session.clear()  # nothing from before the sign-in survives it (nor its CSRF secret)
    session.permanent = True  # expires after dashboard.session_hours
    session[SESSION_KEY_ID] = operator.key_id


def end_session() -> None:
    session.clear()


def operator() -> Operator:
    found: Operator = g.operator
    return found
