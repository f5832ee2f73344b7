"""What the UnifiedAPI caches in a process is told apart from what changed in the database.

- SQLite: ``api_versions`` holds two counters, ``directory`` and ``rules``; triggers bump
  ``directory`` on every change to accounts, extensions and apps and on every change to tokens
  other than a new one, and ``rules`` on every change to phone_call_events (store/uapi_sqlite.py
  compares them before using what it cached).
- PostgreSQL: the same changes send ``NOTIFY callhook_directory`` and ``NOTIFY callhook_rules``
  (payload: the extension's id) at commit (store/uapi_postgres.py listens); a counter would make
  every Create of every process update one row.

A new token changes nothing: no cached entry can be stale because of it.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: table -> (the counter or channel it bumps, the row changes that do)
WATCHED = {
    "accounts": ("directory", ("INSERT", "UPDATE", "DELETE")),
    "extensions": ("directory", ("INSERT", "UPDATE", "DELETE")),
    "apps": ("directory", ("INSERT", "UPDATE", "DELETE")),
    "tokens": ("directory", ("UPDATE", "DELETE")),
    "phone_call_events": ("rules", ("INSERT", "UPDATE", "DELETE")),
}


def upgrade() -> None:
    versions = op.create_table(
        "api_versions",
        sa.Column("name", sa.String(20), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(versions, [{"name": "directory", "version": 0}, {"name": "rules", "version": 0}])
    if op.get_context().dialect.name == "postgresql":
        _postgresql_notify()
        return
    for table, (counter, changes) in WATCHED.items():
        for change in changes:
            # names from WATCHED above, never from input
            bump = f"UPDATE api_versions SET version = version + 1 WHERE name = '{counter}'"  # noqa: S608
            op.execute(
                f"CREATE TRIGGER {table}_{change.lower()}_version AFTER {change} ON {table} "
                f"BEGIN {bump}; END"
            )


def _postgresql_notify() -> None:
    op.execute(
        "CREATE FUNCTION callhook_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('callhook_directory', TG_TABLE_NAME); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE FUNCTION callhook_rules_changed() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('callhook_rules', CASE TG_OP WHEN 'DELETE' "
        "THEN OLD.extension_id::text ELSE NEW.extension_id::text END); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE FUNCTION callhook_rules_truncated() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('callhook_rules', ''); RETURN NULL; END $$"
    )
    for table, (channel, changes) in WATCHED.items():
        # per row (a DELETE that matches nothing notifies nothing); notices of one
        # transaction with the same payload are sent once, at commit
        op.execute(
            f"CREATE TRIGGER {table}_changed AFTER {' OR '.join(changes)} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION callhook_{channel}_changed()"
        )
        whole = "directory_changed" if channel == "directory" else "rules_truncated"
        op.execute(
            f"CREATE TRIGGER {table}_truncated AFTER TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION callhook_{whole}()"
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER {table}_truncated ON {table}")
            op.execute(f"DROP TRIGGER {table}_changed ON {table}")
        for name in ("directory_changed", "rules_changed", "rules_truncated"):
            op.execute(f"DROP FUNCTION callhook_{name}()")
    else:
        for table, (_counter, changes) in WATCHED.items():
            for change in changes:
                op.execute(f"DROP TRIGGER {table}_{change.lower()}_version")
    op.drop_table("api_versions")
