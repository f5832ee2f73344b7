"""The engine: sources, calls, call events, deliveries and their attempts; signing keys.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from callhook.store.tables import Id, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _fk(column: str, table: str, target: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], ondelete=ondelete, name=f"fk_{table}_{column}_{target}"
    )


def upgrade() -> None:
    # plain ADD COLUMN, never a batch table copy (see 0002)
    for name in ("signing_secret", "previous_signing_secret"):
        op.add_column("apps", sa.Column(name, sa.String(100), nullable=True))
    op.add_column("apps", sa.Column("signing_rotated", UTCDateTime, nullable=True))
    # no foreign key: SQLite cannot add one to an existing table without a copy; a rule whose
    # app is gone is signed with the instance key
    op.add_column("phone_call_events", sa.Column("app_id", Id, nullable=True))
    op.create_table(
        "instance_secrets",
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_instance_secrets"),
    )
    op.create_table(
        "sources",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sources"),
        sa.UniqueConstraint("name", name="uq_sources_name"),
        sa.UniqueConstraint("token_hash", name="uq_sources_token_hash"),
    )
    op.create_table(
        "calls",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("source_id", Id, nullable=False),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("updated", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_calls"),
        _fk("source_id", "calls", "sources"),
        sa.UniqueConstraint("source_id", "call_id", name="uq_calls_source_id_call_id"),
    )
    op.create_table(
        "call_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("source_id", Id, nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("call_ref", Id, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("note", sa.String(200), nullable=True),
        sa.Column("received", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_call_events"),
        _fk("source_id", "call_events", "sources"),
        _fk("call_ref", "call_events", "calls"),
        sa.UniqueConstraint("source_id", "event_id", name="uq_call_events_source_id_event_id"),
    )
    op.create_index("ix_call_events_call_ref", "call_events", ["call_ref"])
    op.create_table(
        "deliveries",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("webhook_id", sa.String(40), nullable=False),
        sa.Column("call_ref", Id, nullable=False),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("event_type", sa.SmallInteger, nullable=False),
        sa.Column("extension", sa.String(30), nullable=False),
        sa.Column("owner_path", sa.String(200), nullable=False),
        sa.Column("rule_id", sa.String(30), nullable=False),
        sa.Column("app_id", Id, nullable=True),
        sa.Column("method", sa.SmallInteger, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("order_key", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("finished", UTCDateTime, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        _fk("call_ref", "deliveries", "calls"),
        _fk("app_id", "deliveries", "apps", "SET NULL"),
        sa.UniqueConstraint("webhook_id", name="uq_deliveries_webhook_id"),
    )
    op.create_index("ix_deliveries_call_id", "deliveries", ["call_id"])
    op.create_index("ix_deliveries_owner_path", "deliveries", ["owner_path"])
    op.create_index("ix_deliveries_state_next_at", "deliveries", ["state", "next_at"])
    op.create_index("ix_deliveries_order_key_id", "deliveries", ["order_key", "id"])
    op.create_index("ix_deliveries_created", "deliveries", ["created"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", Id, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("error_class", sa.String(30), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("snippet", sa.Text, nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_attempts"),
        _fk("delivery_id", "delivery_attempts", "deliveries"),
    )
    op.create_index("ix_delivery_attempts_delivery_id", "delivery_attempts", ["delivery_id"])


def downgrade() -> None:
    for table in ("delivery_attempts", "deliveries", "call_events", "calls", "sources"):
        op.drop_table(table)
    op.drop_table("instance_secrets")
    op.drop_column("phone_call_events", "app_id")
    for name in ("signing_rotated", "previous_signing_secret", "signing_secret"):
        op.drop_column("apps", name)
