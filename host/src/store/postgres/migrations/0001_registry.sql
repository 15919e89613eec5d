-- Schema 1: the registry, shared by every node. Names sort as bytes (COLLATE "C"), as the
-- embedded store's keys do. Records are the model's JSON (jsonb).

-- Plugin components by SHA-256 (hex): stored once, shared by every name that runs them.
CREATE TABLE components (
    digest text COLLATE "C" PRIMARY KEY,
    wasm   bytea NOT NULL
);

-- Plugin versions: a name and a component, with what was registered.
CREATE TABLE plugin_versions (
    name          text COLLATE "C" NOT NULL,
    digest        text COLLATE "C" NOT NULL,
    registered_ms bigint NOT NULL,
    version       jsonb NOT NULL,
    PRIMARY KEY (name, digest)
);
-- Whether any name still uses a component.
CREATE INDEX plugin_versions_by_digest ON plugin_versions (digest);

-- Which version each plugin runs, and the ones before it (rollback).
CREATE TABLE plugin_heads (
    name text COLLATE "C" PRIMARY KEY,
    head jsonb NOT NULL
);

-- Workflow definitions by name and the digest of their canonical form.
CREATE TABLE workflow_versions (
    name          text COLLATE "C" NOT NULL,
    digest        text COLLATE "C" NOT NULL,
    registered_ms bigint NOT NULL,
    version       jsonb NOT NULL,
    PRIMARY KEY (name, digest)
);

CREATE TABLE workflow_heads (
    name text COLLATE "C" PRIMARY KEY,
    head jsonb NOT NULL
);

-- The latest firing of each workflow's schedule that was started.
CREATE TABLE schedule_marks (
    workflow text COLLATE "C" PRIMARY KEY,
    fired_ms bigint NOT NULL
);
