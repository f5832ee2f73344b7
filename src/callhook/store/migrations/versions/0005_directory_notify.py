"""PostgreSQL: changes to accounts, extensions, apps and tokens send NOTIFY callhook_directory
(the UnifiedAPI's in-process cache of tokens, accounts and extensions is flushed on it; see
store/uapi_postgres.py). A new token sends nothing: no cached entry can be stale because of it.
SQLite: nothing (its API reads are not cached).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: table -> the row changes that notify
TABLES = {
    "accounts": "INSERT OR UPDATE OR DELETE",
    "extensions": "INSERT OR UPDATE OR DELETE",
    "apps": "INSERT OR UPDATE OR DELETE",
    "tokens": "UPDATE OR DELETE",
}


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION callhook_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('callhook_directory', TG_TABLE_NAME); RETURN NULL; END $$"
    )
    for table, events in TABLES.items():
        # per row (a DELETE that matches nothing notifies nothing); notices of one
        # transaction with the same payload are sent once, at commit
        op.execute(
            f"CREATE TRIGGER {table}_directory_changed AFTER {events} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION callhook_directory_changed()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_directory_truncated AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION callhook_directory_changed()"
        )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER {table}_directory_truncated ON {table}")
        op.execute(f"DROP TRIGGER {table}_directory_changed ON {table}")
    op.execute("DROP FUNCTION callhook_directory_changed()")
