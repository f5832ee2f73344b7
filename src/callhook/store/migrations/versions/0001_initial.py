"""Initial schema: accounts, extensions, apps, tokens, phone_call_events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from callhook.store.tables import Id, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("parent_id", Id, nullable=True),
        sa.Column("path", sa.String(200), nullable=False),
        sa.Column("org_code", sa.Integer, nullable=True),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["accounts.id"],
            ondelete="CASCADE",
            name="fk_accounts_parent_id_accounts",
        ),
        sa.UniqueConstraint("org_code", name="uq_accounts_org_code"),
    )
    op.create_index("ix_accounts_path", "accounts", ["path"])
    op.create_table(
        "extensions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("org_id", Id, nullable=False),
        sa.Column("owner_id", Id, nullable=False),
        sa.Column("number", sa.String(12), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_extensions"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["accounts.id"], ondelete="CASCADE", name="fk_extensions_org_id_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["accounts.id"],
            ondelete="CASCADE",
            name="fk_extensions_owner_id_accounts",
        ),
        sa.UniqueConstraint("org_id", "number", name="uq_extensions_org_id_number"),
    )
    op.create_index("ix_extensions_owner_id", "extensions", ["owner_id"])
    op.create_table(
        "apps",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.String(200), nullable=False),
        sa.Column("account_id", Id, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("redirect_uri", sa.String(2048), nullable=False, server_default=""),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_apps"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], ondelete="CASCADE", name="fk_apps_account_id_accounts"
        ),
        sa.UniqueConstraint("client_id", name="uq_apps_client_id"),
    )
    op.create_index("ix_apps_account_id", "apps", ["account_id"])
    op.create_table(
        "tokens",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("app_id", Id, nullable=False),
        sa.Column("account_id", Id, nullable=False),
        sa.Column("scope", sa.String(100), nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], ondelete="CASCADE", name="fk_tokens_app_id_apps"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            ondelete="CASCADE",
            name="fk_tokens_account_id_accounts",
        ),
        sa.UniqueConstraint("token_hash", name="uq_tokens_token_hash"),
    )
    op.create_index("ix_tokens_app_id", "tokens", ["app_id"])
    op.create_table(
        "phone_call_events",
        sa.Column("id", sa.String(30), nullable=False),
        sa.Column("extension_id", Id, nullable=False),
        sa.Column("type", sa.SmallInteger, nullable=False),
        sa.Column("method", sa.SmallInteger, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("modified", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_phone_call_events"),
        sa.ForeignKeyConstraint(
            ["extension_id"],
            ["extensions.id"],
            ondelete="CASCADE",
            name="fk_phone_call_events_extension_id_extensions",
        ),
    )
    op.create_index(
        "ix_phone_call_events_extension_type", "phone_call_events", ["extension_id", "type"]
    )


def downgrade() -> None:
    for table in ("phone_call_events", "tokens", "apps", "extensions", "accounts"):
        op.drop_table(table)
