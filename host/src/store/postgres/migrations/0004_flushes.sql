-- Schema 4: group commit. Writes commit without waiting for the WAL to reach the disk
-- (synchronous_commit = off); a flush is a transaction that writes one of these rows and
-- commits synchronously, which flushes the WAL up to it: every write committed before it.
-- One row per store instance (a node's process), so that nodes do not queue on one row.
CREATE TABLE flush_marks (
    store   text COLLATE "C" PRIMARY KEY,
    flushes bigint NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
