"""Alembic environment: callscribe passes its own connection in; no alembic.ini needed."""

from alembic import context

from callscribe import db

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    engine = config.attributes["engine"]
    with engine.begin() as connection:
        context.configure(connection=connection, version_table=db.VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, version_table=db.VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
