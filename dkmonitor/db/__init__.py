"""The history database: models, engine, queries, spool, and the backends' table.

Deliberately empty of imports: ``dkmonitor view`` imports ``dkmonitor.db.readonly``
without SQLAlchemy, and a package ``__init__`` that pulled in the engine would
cost every command a quarter of a second.
"""
