"""The pending deliveries in a narrow table of their own, ``delivery_queue``.

The claim walked the partial indexes of pending deliveries (0007) and, for each, read the wide
delivery row: past every delivery a worker already held (leased, still due: up to 512 per
worker) and every one waiting behind an earlier one of its call. And as ``state`` was part of
those indexes, recording an attempt's end could never change a delivery in place: PostgreSQL
wrote a new entry in each of the table's five other indexes (bench/RESULTS.md item 20).

Now a delivery is in ``delivery_queue`` (id, order key, host, when it may be claimed) exactly
while it is pending. A claim moves its row's ``next_at`` to the lease's end, so the walk never
meets what workers hold; an attempt's end deletes the row (or moves it to the retry's time);
and no index of ``deliveries`` names its state, lease or next attempt, so those updates stay in
place (PostgreSQL's HOT, with the fill factor of 0006).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from callhook.store.tables import Id, UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    op.create_table(
        "delivery_queue",
        sa.Column("id", Id, nullable=False, autoincrement=False),
        sa.Column("order_key", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("next_at", UTCDateTime, nullable=False),
        sa.Column("parked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["id"],
            ["deliveries.id"],
            ondelete="CASCADE",
            name="fk_delivery_queue_id_deliveries",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_queue"),
    )
    op.create_index("ix_delivery_queue_next_at", "delivery_queue", ["next_at", "id"])
    op.create_index("ix_delivery_queue_order_key", "delivery_queue", ["order_key", "id"])
    # a leased delivery may be claimed again once its lease has run out
    op.execute(
        "INSERT INTO delivery_queue (id, order_key, host, next_at) "
        "SELECT id, order_key, host, CASE WHEN lease_until IS NOT NULL "
        "AND lease_until > next_at THEN lease_until ELSE next_at END "
        "FROM deliveries WHERE state = 'pending'"
    )
    op.drop_index("ix_deliveries_pending_order_key", table_name="deliveries")
    op.drop_index("ix_deliveries_pending_next_at", table_name="deliveries")
    if op.get_bind().dialect.name == "postgresql":
        # small and busy: each delivery is inserted, updated and deleted here within seconds;
        # vacuumed after a few thousand dead rows rather than a fifth of the table
        op.execute(
            "ALTER TABLE delivery_queue SET (autovacuum_vacuum_scale_factor = 0, "
            "autovacuum_vacuum_threshold = 5000, autovacuum_analyze_scale_factor = 0, "
            "autovacuum_analyze_threshold = 5000)"
        )


def downgrade() -> None:
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
    op.drop_table("delivery_queue")
