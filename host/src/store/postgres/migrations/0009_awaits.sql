-- Schema 9: which runs await events on which topics, for every node to see: an event any
-- node takes from the broker reaches the runs other nodes hold. A run that correlates (its
-- `match` requires a field of the event to equal a value its context holds) is noted with
-- that field's path (a JSON array) and the value (as the engine keys it), so that an event
-- is checked only against the runs that wait for its value.
CREATE TABLE awaits (
    run_id    text COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    topic     text COLLATE "C" NOT NULL,
    key_path  text COLLATE "C",
    key_value text COLLATE "C",
    PRIMARY KEY (run_id, topic)
);
CREATE INDEX awaits_by_topic ON awaits (topic, key_path, key_value);
