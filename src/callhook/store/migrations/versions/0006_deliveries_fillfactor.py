"""PostgreSQL: room in the deliveries' pages for the lease's update to stay on its page.

A claim only sets a delivery's lease (columns no index holds): with free room on the row's
page PostgreSQL writes the new version beside it without touching any of the table's seven
indexes (a HOT update). Full pages (the default fill factor, 100) made every claim a new
entry in each index. Applies to pages written from now on. SQLite has no such setting.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FILLFACTOR = 70


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE deliveries SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
