-- Schema 8: relays on several nodes share the outbox. A relay takes the entries it is about
-- to send for a while (`relay_until`, PostgreSQL's clock, ms; `relay_by`, its process's
-- incarnation); the others skip them until then, so that an event goes out once in the
-- normal case, and a relay that died leaves its entries to the others after that while.
ALTER TABLE outbox ADD COLUMN relay_until bigint NOT NULL DEFAULT 0,
    ADD COLUMN relay_by text COLLATE "C";
