"""PostgreSQL: room in a delivery's page for all three versions of its row.

A delivery's row is written three times: inserted by ingest, leased by a claim, finished by the
attempt's record (a retry adds a lease and a record each). Since 0008 no index of ``deliveries``
holds a column the lease or the record changes, so each can be written beside the old version
on its page (a HOT update, no new entry in any of the table's five indexes), but only while
the page has room: PostgreSQL reclaims a page's dead versions only once no transaction can see
them. With 0006's fill factor (70) about half the updates found their page full and wrote a new
entry in every index; with room for each row's three versions (35) almost all stay in place,
and the table is no larger: a version moved to another page took as much room there as the
room now kept free beside it (bench/RESULTS.md item 21). Applies to pages written from now
on. SQLite has no such setting.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: a page filled to a third at insert: each row's lease and record fit beside it
FILLFACTOR = 35
#: 0006's
PREVIOUS = 70


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE deliveries SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE deliveries SET (fillfactor = {PREVIOUS})")
