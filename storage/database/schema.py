"""Every table of the database (SQLAlchemy Core).  Changing one means a migration on top of the current
head in ``storage/database/migrations/versions/`` (one chain, never two heads).

The identity and policy store (auth/ decides with it, auth/identity.py manages it):

- ``users``: who can log in.  ``password`` is a bcrypt hash (NULL: no local password, e.g. a user of a
  directory); ``credentials_changed`` moves when the password changes or the user is disabled or enabled,
  and ends the web UI sessions and refresh tokens issued before.
- ``teams`` and ``team_members``: named sets of users.
- ``namespaces``: a repository path prefix (``payments``, ``payments/api``), public (anonymous pull) or
  private, with its settings (``quota`` in bytes, ``retention`` as a retention policy without
  ``repositories``, ``immutable_tags`` as tag patterns).  ``personal_user_id`` marks a user's own
  namespace (created on first use).
- ``namespace_members``: a user or a team holding one role on a namespace.
- ``changes``: the management audit trail (who changed what, from where, before and after).
- ``robots``: machine accounts owned by a namespace (not by a person: ``created_by`` is a name, not a
  reference), with the actions they may hold there.
- ``tokens``: personal access tokens of users and tokens of robots (exactly one owner).  ``id`` is the
  public id (also inside the secret), ``digest`` the secret's keyed hash (auth/tokens.py); ``last_used``
  and ``last_address`` are bookkeeping written in batches.
- ``external_users``: users of a directory or a single sign-on: which source, the provider's stable
  subject (an OpenID issuer and ``sub``: a name reassigned at the provider cannot take the account over)
  and the teams its groups map to, as of the user's latest login.
- ``feed``: one row whose ``version`` every policy change increments in its own transaction: the change
  feed each replica polls to invalidate its caches (storage/database/feed.py).

The web UI's sessions (storage/sessions.py):

- ``ui_sessions``: one row per logged-in session, keyed by the SHA-256 of its id; logging out deletes it
  (``started``/``expires`` are Unix times).

The brute-force brake (storage/database/login_failures.py, auth/brake.py):

- ``login_failures``: failed logins per (user, client address), keyed by a hash of both, so that every
  replica and worker counts the same failures (``last`` is a Unix time).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from storage.database.records import ROLES

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

feed = Table(
    "feed", metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("email", String(320)),
    Column("password", String(128)),
    Column("admin", Boolean, nullable=False, default=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("last_login", DateTime(timezone=True)),
    Column("credentials_changed", DateTime(timezone=True), nullable=False),
)

teams = Table(
    "teams", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created", DateTime(timezone=True), nullable=False),
)

team_members = Table(
    "team_members", metadata,
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_team_members_user_id", "user_id"),
)

namespaces = Table(
    "namespaces", metadata,
    Column("id", Integer, primary_key=True),
    Column("path", String(255), nullable=False, unique=True),
    Column("public", Boolean, nullable=False, default=False),
    Column("personal_user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), unique=True),
    Column("quota", BigInteger),
    Column("retention", JSON),
    Column("immutable_tags", JSON),
    Column("created", DateTime(timezone=True), nullable=False),
)

namespace_members = Table(
    "namespace_members", metadata,
    Column("id", Integer, primary_key=True),
    Column("namespace_id", Integer, ForeignKey("namespaces.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE")),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE")),
    Column("role", String(16), nullable=False),
    CheckConstraint("(user_id IS NULL) <> (team_id IS NULL)", name="one_member"),
    CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="role"),
    UniqueConstraint("namespace_id", "user_id", name="uq_namespace_members_user"),
    UniqueConstraint("namespace_id", "team_id", name="uq_namespace_members_team"),
)

changes = Table(
    "changes", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(255)),
    Column("address", String(64)),
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=False),
    Column("namespace", String(255)),
    Column("before", JSON),
    Column("after", JSON),
    Index("ix_changes_namespace", "namespace", "id"),
)

robots = Table(
    "robots", metadata,
    Column("id", Integer, primary_key=True),
    Column("namespace_id", Integer, ForeignKey("namespaces.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("actions", JSON, nullable=False),
    Column("description", String(255)),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("created_by", String(255)),
    UniqueConstraint("namespace_id", "name", name="uq_robots_namespace_name"),
)

tokens = Table(
    "tokens", metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE")),
    Column("robot_id", Integer, ForeignKey("robots.id", ondelete="CASCADE")),
    Column("name", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("repositories", JSON),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("created_by", String(255)),
    Column("expires", DateTime(timezone=True)),
    Column("last_used", DateTime(timezone=True)),
    Column("last_address", String(64)),
    CheckConstraint("(user_id IS NULL) <> (robot_id IS NULL)", name="one_owner"),
    UniqueConstraint("user_id", "name", name="uq_tokens_user_name"),
    UniqueConstraint("robot_id", "name", name="uq_tokens_robot_name"),
)

external_users = Table(
    "external_users", metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("source", String(16), nullable=False),
    Column("subject", String(512)),
    Column("teams", JSON, nullable=False),
    Column("seen", DateTime(timezone=True), nullable=False),
)

ui_sessions = Table(
    "ui_sessions", metadata,
    Column("id", String(64), primary_key=True),
    Column("user", String(255), nullable=False),
    Column("started", Float, nullable=False),
    Column("expires", Float, nullable=False),
    Index("ix_ui_sessions_user", "user"),
    Index("ix_ui_sessions_expires", "expires"),
)

login_failures = Table(
    "login_failures", metadata,
    Column("key", String(64), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last", Float, nullable=False),
    Index("ix_login_failures_last", "last"),
)
