-- Schema 5: runs of one workflow, newest first, whatever their status.
CREATE INDEX runs_by_workflow ON runs (workflow, created_ms, id);
