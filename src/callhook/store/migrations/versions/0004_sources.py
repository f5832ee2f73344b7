"""PBX sources: the state of each AMI/ESL link; a note on deliveries of reconstructed events.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from callhook.store.tables import Id, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN, never a batch table copy (see 0002)
    op.add_column("deliveries", sa.Column("note", sa.String(250), nullable=True))
    op.create_table(
        "source_links",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("source_id", Id, nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("connected", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("since", UTCDateTime, nullable=True),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("reconnects", sa.Integer, nullable=False),
        sa.Column("tracked_calls", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_error_at", UTCDateTime, nullable=True),
        sa.Column("runner", sa.String(100), nullable=False),
        sa.Column("updated", UTCDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            ondelete="CASCADE",
            name="fk_source_links_source_id_sources",
        ),
        sa.UniqueConstraint("source_id", name="uq_source_links_source_id"),
    )


def downgrade() -> None:
    op.drop_table("source_links")
    op.drop_column("deliveries", "note")
