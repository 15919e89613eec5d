-- Schema 7: every node hears at once that another made a plugin or workflow version
-- current (a push, a rollback, a retirement): a change of either table of heads notifies
-- channel `flowhost_registry` with the table's name, when its transaction commits.
CREATE FUNCTION flowhost_registry_changed() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_notify('flowhost_registry', TG_TABLE_NAME); RETURN NULL; END $$;
CREATE TRIGGER plugin_heads_changed AFTER INSERT OR UPDATE OR DELETE ON plugin_heads
    FOR EACH STATEMENT EXECUTE FUNCTION flowhost_registry_changed();
CREATE TRIGGER workflow_heads_changed AFTER INSERT OR UPDATE OR DELETE ON workflow_heads
    FOR EACH STATEMENT EXECUTE FUNCTION flowhost_registry_changed();
