-- Schema 10: the embedded transport's queues shared by several nodes. A node takes the
-- deliveries it hands out for a while (`taken_until`, PostgreSQL's clock, ms; `taken_by`,
-- its process's incarnation); the others skip them until they are settled (acknowledged,
-- queued again, or buried) or that while ends (the node died holding them).
ALTER TABLE queue ADD COLUMN taken_until bigint NOT NULL DEFAULT 0,
    ADD COLUMN taken_by text COLLATE "C";
