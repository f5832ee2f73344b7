"""Authorization-code grant: account sign-in, refresh tokens, authorization codes.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from callhook.store.tables import Id, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN, never a batch table copy: on SQLite with foreign keys on, copying
    # "accounts" would drop the old table and cascade-delete everything below it
    op.add_column("accounts", sa.Column("login", sa.String(100), nullable=True))
    op.add_column("accounts", sa.Column("password_hash", sa.String(200), nullable=True))
    op.create_index("uq_accounts_login", "accounts", ["login"], unique=True)
    op.add_column(
        "tokens", sa.Column("kind", sa.String(10), nullable=False, server_default="access")
    )
    op.create_table(
        "authorization_codes",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("app_id", Id, nullable=False),
        sa.Column("account_id", Id, nullable=False),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("scope", sa.String(100), nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("used", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_authorization_codes"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], ondelete="CASCADE", name="fk_authorization_codes_app_id_apps"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            ondelete="CASCADE",
            name="fk_authorization_codes_account_id_accounts",
        ),
        sa.UniqueConstraint("code_hash", name="uq_authorization_codes_code_hash"),
    )


def downgrade() -> None:
    op.drop_table("authorization_codes")
    op.drop_column("tokens", "kind")
    op.drop_index("uq_accounts_login", "accounts")
    op.drop_column("accounts", "password_hash")
    op.drop_column("accounts", "login")
