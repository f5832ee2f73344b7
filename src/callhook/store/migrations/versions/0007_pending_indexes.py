"""The claim's two indexes hold pending deliveries only.

``ix_deliveries_state_next_at`` (state, next_at) and ``ix_deliveries_order_key_id``
(order_key, id) held every delivery ever made, though only pending ones are ever looked up
through them: the claim walks due deliveries in next_at order and, for each, looks for an
earlier pending one of its (url, call). As partial indexes (``WHERE state = 'pending'``) they
stay the size of the backlog, the claim's probes skip the finished deliveries of a call instead
of reading each from the table, and recording an attempt's end (a delivery leaving 'pending')
writes five index entries instead of seven (bench/RESULTS.md item 16). Both engines support
partial indexes.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    op.drop_index("ix_deliveries_state_next_at", table_name="deliveries")
    op.drop_index("ix_deliveries_order_key_id", table_name="deliveries")
    op.create_index(
        "ix_deliveries_pending_next_at",
        "deliveries",
        ["next_at", "id"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_index(
        "ix_deliveries_pending_order_key",
        "deliveries",
        ["order_key", "id"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_pending_order_key", table_name="deliveries")
    op.drop_index("ix_deliveries_pending_next_at", table_name="deliveries")
    op.create_index("ix_deliveries_state_next_at", "deliveries", ["state", "next_at"])
    op.create_index("ix_deliveries_order_key_id", "deliveries", ["order_key", "id"])
