"""The schema, declared once. Alembic migrations must produce exactly this (a test checks)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to UTCDateTime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("parent_id", Id, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True),
    Column("path", String(200), nullable=False, index=True),
    Column("org_code", Integer, nullable=True, unique=True),
    Column("created", UTCDateTime, nullable=False),
    # sign-in for the OAuth authorization-code grant; both unset = the account cannot sign in
    Column("login", String(100), nullable=True),
    Column("password_hash", String(200), nullable=True),
    Index("uq_accounts_login", "login", unique=True),
)

extensions = Table(
    "extensions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", Id, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column(
        "owner_id", Id, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("number", String(12), nullable=False),
    Column("type", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created", UTCDateTime, nullable=False),
    UniqueConstraint("org_id", "number", name="uq_extensions_org_id_number"),
)

apps = Table(
    "apps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("secret_hash", String(200), nullable=False),
    Column(
        "account_id", Id, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("name", String(200), nullable=False),
    Column("redirect_uri", String(2048), nullable=False, server_default=""),
    Column("created", UTCDateTime, nullable=False),
    # Standard Webhooks key of the requests this app's rules cause (whsec_...); made on first
    # use. After a rotation the previous key also signs until ``signing_rotated`` + grace.
    Column("signing_secret", String(100), nullable=True),
    Column("previous_signing_secret", String(100), nullable=True),
    Column("signing_rotated", UTCDateTime, nullable=True),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("app_id", Id, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("account_id", Id, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("scope", String(100), nullable=False),
    #: "access" or "refresh"
    Column("kind", String(10), nullable=False, server_default="access"),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked", Boolean, nullable=False, server_default=false()),
    Column("created", UTCDateTime, nullable=False),
)

phone_call_events = Table(
    "phone_call_events",
    metadata,
    Column("id", String(30), primary_key=True),
    Column("extension_id", Id, ForeignKey("extensions.id", ondelete="CASCADE"), nullable=False),
    Column("type", SmallInteger, nullable=False),
    Column("method", SmallInteger, nullable=False),
    Column("url", Text, nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("note", Text, nullable=False),
    Column("modified", UTCDateTime, nullable=False),
    # the app that created the rule: its key signs the requests (unset or gone: the instance
    # key). No foreign key: SQLite cannot add one to an existing table without copying it.
    Column("app_id", Id, nullable=True),
    Index("ix_phone_call_events_extension_type", "extension_id", "type"),
)

#: on SQLite, counters that triggers bump on every change to the directory (accounts,
#: extensions, apps, tokens other than a new one) and to the rules: a process compares them to
#: know whether what it cached is still what the database holds (store/uapi_sqlite.py). On
#: PostgreSQL the same changes send NOTIFY instead (migration 0005), and the rows stay as made.
api_versions = Table(
    "api_versions",
    metadata,
    Column("name", String(20), primary_key=True),
    Column("version", BigInteger, nullable=False),
)

authorization_codes = Table(
    "authorization_codes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("app_id", Id, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    Column("account_id", Id, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("redirect_uri", String(2048), nullable=False),
    Column("scope", String(100), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used", Boolean, nullable=False, server_default=false()),
    Column("created", UTCDateTime, nullable=False),
)

instance_secrets = Table(
    "instance_secrets",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created", UTCDateTime, nullable=False),
)

# --- the engine: call events in, deliveries out ------------------------------------------------

sources = Table(
    "sources",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created", UTCDateTime, nullable=False),
)

#: the live state of each PBX connection (AMI, ESL), written by the process that runs it
source_links = Table(
    "source_links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source_id", Id, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    #: ami or esl
    Column("kind", String(10), nullable=False),
    #: host:port of the PBX
    Column("target", String(255), nullable=False),
    Column("connected", Boolean, nullable=False, server_default=false()),
    #: when the link last connected (connected) or dropped (not connected)
    Column("since", UTCDateTime, nullable=True),
    Column("events", BigInteger, nullable=False),
    Column("reconnects", Integer, nullable=False),
    Column("tracked_calls", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", UTCDateTime, nullable=True),
    #: the process running the link (host:pid) and when it last reported
    Column("runner", String(100), nullable=False),
    Column("updated", UTCDateTime, nullable=False),
    UniqueConstraint("source_id", name="uq_source_links_source_id"),
)

calls = Table(
    "calls",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source_id", Id, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("call_id", String(200), nullable=False),
    #: domain.calls.CallState as JSON
    Column("state", Text, nullable=False),
    #: deliveries made for this call so far (X-Callhook-Seq of the last one)
    Column("seq", Integer, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("updated", UTCDateTime, nullable=False),
    UniqueConstraint("source_id", "call_id", name="uq_calls_source_id_call_id"),
)

call_events = Table(
    "call_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source_id", Id, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("call_ref", Id, ForeignKey("calls.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("body", Text, nullable=False),
    #: why the event fired nothing, when it did not (held, duplicate leg, call already ended)
    Column("note", String(200), nullable=True),
    Column("received", UTCDateTime, nullable=False),
    UniqueConstraint("source_id", "event_id", name="uq_call_events_source_id_event_id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    #: the public id, sent as webhook-id on every attempt
    Column("webhook_id", String(40), nullable=False, unique=True),
    Column("call_ref", Id, ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
    Column("call_id", String(200), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("event_type", SmallInteger, nullable=False),
    Column("extension", String(30), nullable=False),
    #: path of the extension's owner when the delivery was made (subtree access)
    Column("owner_path", String(200), nullable=False, index=True),
    Column("rule_id", String(30), nullable=False),
    Column("app_id", Id, ForeignKey("apps.id", ondelete="SET NULL"), nullable=True),
    Column("method", SmallInteger, nullable=False),
    Column("url", Text, nullable=False),
    Column("host", String(255), nullable=False),
    #: deliveries with the same key (url, call) are sent one after another, in id order
    Column("order_key", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    #: pending, delivered, failed or expired
    Column("state", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("created", UTCDateTime, nullable=False),
    Column("finished", UTCDateTime, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    #: why the event behind it was made up by its source (a reconstructed hangup), if it was
    Column("note", String(250), nullable=True),
    Index("ix_deliveries_created", "created"),
)

#: the pending deliveries, narrow: what the claim walks (migration 0008). A row is here exactly
#: while its delivery's state is pending; its ``next_at`` is when the delivery may be claimed:
#: the delivery's own next attempt, or its lease's end while leased (so the claim never reads
#: past what workers hold). The deliveries table keeps no index that its state, lease or
#: next attempt is part of: recording an attempt changes its row in place.
delivery_queue = Table(
    "delivery_queue",
    metadata,
    Column(
        "id",
        Id,
        ForeignKey("deliveries.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    #: the delivery's: deliveries with the same key are sent one after another, in id order
    Column("order_key", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("next_at", UTCDateTime, nullable=False),
    #: made behind an earlier delivery of its (url, call) in the same commit: due only once
    #: that one is finished (``outbox.WAKE_NEXT``), or after ``outbox.PARKED`` at the latest
    Column("parked", Boolean, nullable=False, server_default=false()),
    Index("ix_delivery_queue_next_at", "next_at", "id"),
    Index("ix_delivery_queue_order_key", "order_key", "id"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        Id,
        ForeignKey("deliveries.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("at", UTCDateTime, nullable=False),
    Column("host", String(255), nullable=False),
    Column("status", Integer, nullable=True),
    Column("error_class", String(30), nullable=True),
    Column("error", Text, nullable=True),
    Column("latency_ms", Integer, nullable=False),
    Column("snippet", Text, nullable=False),
    Column("worker", String(64), nullable=False),
)
