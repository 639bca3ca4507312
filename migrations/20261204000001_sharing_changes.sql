-- Processors look for partitions to claim when the sharing changes, told
-- by a notification on `dropline_sharing`, instead of asking every 250 ms:
-- with 1,000 open drops and nothing to do, that count of the live drops
-- was the largest share of Postgres's idle work (`bench --only idle`).
-- What changes the sharing at once: a new drop, a processor leaving
-- gracefully, a partition handed back (here), and a processor joining
-- (its first heartbeat of a run sends the same notification, see the
-- store). What changes it with time (a lease running out, a processor
-- gone silent, a closed drop's linger ending) each processor still finds
-- by looking every third of a lease.
CREATE FUNCTION dropline_notify_sharing() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- One payload for all: a listener only learns "look again".
    PERFORM pg_notify('dropline_sharing', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER drops_sharing AFTER INSERT OR DELETE ON drops
    FOR EACH STATEMENT EXECUTE FUNCTION dropline_notify_sharing();

CREATE TRIGGER processors_left AFTER DELETE ON processors
    FOR EACH STATEMENT EXECUTE FUNCTION dropline_notify_sharing();

-- A partition handed back; batches and renewals leave `owner` as it is.
CREATE TRIGGER partitions_handed_back AFTER UPDATE OF owner ON partitions
    FOR EACH ROW WHEN (OLD.owner IS NOT NULL AND NEW.owner IS NULL)
    EXECUTE FUNCTION dropline_notify_sharing();
