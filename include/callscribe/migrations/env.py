"""Alembic environment: callscribe passes its own connection in; no alembic.ini needed."""

from alembic import context

from callscribe import db

config = context.config
connection = config.attributes.get("connection")
# How long a migration waits for a lock before it gives up, the whole upgrade rolled back
# (db.MIGRATION_LOCK_TIMEOUT says why; db.migrate may pass a shorter one, and names the sessions
# holding the lock when it gives up). Set after `db.migrate` holds its own lock: a second migrate
# waits for the first as long as it takes.
LOCK_TIMEOUT = config.attributes.get("lock_timeout") or db.MIGRATION_LOCK_TIMEOUT



def _migrate(conn) -> None:
    context.configure(connection=conn, version_table=db.VERSION_TABLE)
    with context.begin_transaction():
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        context.run_migrations()


if connection is None:
    with config.attributes["engine"].begin() as connection:
        _migrate(connection)
else:
    _migrate(connection)
