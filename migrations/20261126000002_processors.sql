-- Live processor instances, so partitions can be spread evenly: each
-- instance takes at most its fair share (live SKUs / live instances, rounded
-- up) and hands back what exceeds it when another instance joins.
-- Only load spreading rests on this table; correctness rests on the epoch.
CREATE TABLE processors (
    instance_id     text        PRIMARY KEY CHECK (length(instance_id) BETWEEN 1 AND 200),
    heartbeat_at    timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz NOT NULL DEFAULT now()
);
