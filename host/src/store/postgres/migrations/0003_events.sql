-- Schema 3: the outbox, the embedded transport's queues and the dead letters.

-- Events waiting to be relayed, by id (a ULID: oldest first).
CREATE TABLE outbox (
    event_id text COLLATE "C" PRIMARY KEY,
    entry    jsonb NOT NULL
);

-- Deliveries of the embedded transport, by subscription and due time. (Several nodes share
-- deliveries through NATS JetStream, RabbitMQ or Redis, not through this table.)
CREATE TABLE queue (
    subscription text COLLATE "C" NOT NULL,
    due_ms       bigint NOT NULL,
    event_id     text COLLATE "C" NOT NULL,
    delivery     jsonb NOT NULL,
    PRIMARY KEY (subscription, due_ms, event_id)
);

-- Deliveries given up on, by id (a ULID of when).
CREATE TABLE dead_letters (
    id     text COLLATE "C" PRIMARY KEY,
    letter jsonb NOT NULL
);
