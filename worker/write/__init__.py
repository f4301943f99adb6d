"""Writing an import into the contacts store: what its rows change, the lookups and bulk writes
of PostgreSQL and SQLite, the tables, the import records and the account locks."""
