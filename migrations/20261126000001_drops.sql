-- dropline schema v1: drops, partitions, purchases, and the batch apply.
--
-- Postgres is the single source of truth for what has been applied. The
-- invariants the processor asserts in memory are checked here a second time by
-- constraints, so that even a buggy processor cannot oversell.

CREATE TABLE drops (
    sku             text        PRIMARY KEY CHECK (sku ~ '^[A-Za-z0-9_-]{1,64}$'),
    name            text        NOT NULL DEFAULT '',
    initial_stock   integer     NOT NULL CHECK (initial_stock >= 0),
    restocked       integer     NOT NULL DEFAULT 0 CHECK (restocked >= 0),
    -- Units not yet won. The last line of defence against overselling.
    remaining       integer     NOT NULL CONSTRAINT drops_no_oversell CHECK (remaining >= 0),
    won_units       integer     NOT NULL DEFAULT 0 CHECK (won_units >= 0),
    per_user_limit  integer     NOT NULL DEFAULT 1 CHECK (per_user_limit BETWEEN 1 AND 100),
    status          text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paused', 'closed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Stock is conserved: nothing appears or vanishes outside restocks and wins.
    CONSTRAINT drops_stock_conserved CHECK (remaining = initial_stock + restocked - won_units)
);

-- One row per SKU partition (one NATS subject). Only the owner of the current
-- epoch may apply batches; `applied_seq` is the last stream sequence applied.
CREATE TABLE partitions (
    sku             text        PRIMARY KEY REFERENCES drops (sku),
    epoch           bigint      NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    applied_seq     bigint      NOT NULL DEFAULT 0 CHECK (applied_seq >= 0),
    decided         bigint      NOT NULL DEFAULT 0 CHECK (decided >= 0),
    owner           text,
    lease_until     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Exactly one decision per (SKU, Idempotency-Key), and one per stream message.
CREATE TABLE purchases (
    sku             text        NOT NULL REFERENCES drops (sku),
    idempotency_key text        NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    user_id         text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    quantity        integer     NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    outcome         text        NOT NULL CHECK (outcome IN ('won', 'sold_out', 'limit_reached')),
    order_id        uuid        UNIQUE,
    seq             bigint      NOT NULL CHECK (seq > 0),
    epoch           bigint      NOT NULL,
    decided_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT purchases_one_decision_per_key PRIMARY KEY (sku, idempotency_key),
    CONSTRAINT purchases_one_decision_per_seq UNIQUE (sku, seq),
    CONSTRAINT purchases_order_iff_won CHECK ((outcome = 'won') = (order_id IS NOT NULL))
);

CREATE INDEX purchases_winners ON purchases (sku, user_id) WHERE outcome = 'won';

-- Applies one decided batch in ONE statement (one round trip, one commit).
--
-- Locks the partition row, then refuses unless the caller still holds the
-- partition's epoch (fencing: a stalled ex-owner changes nothing) and its
-- ledger was built from the applied sequence the store holds (no lost or
-- doubled batch). Only then inserts the outcomes, moves the stock and stores
-- the new applied sequence. Errors carry their own SQLSTATEs so the caller can
-- tell "fenced" from "out of date" from a plain failure.
CREATE FUNCTION dropline_apply_batch(
    p_sku               text,
    p_epoch             bigint,
    p_applied_seq_before bigint,
    p_applied_seq_after bigint,
    p_keys              text[],
    p_users             text[],
    p_quantities        integer[],
    p_outcomes          text[],
    p_order_ids         uuid[],
    p_seqs              bigint[]
) RETURNS integer  -- remaining stock after the batch
LANGUAGE plpgsql AS $$
DECLARE
    v_epoch       bigint;
    v_applied_seq bigint;
    v_inserted    integer;
    v_remaining   integer;
    v_won_units   integer;
BEGIN
    SELECT epoch, applied_seq INTO v_epoch, v_applied_seq
      FROM partitions WHERE sku = p_sku FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no partition for sku %', p_sku USING ERRCODE = 'DL404';
    END IF;
    IF v_epoch <> p_epoch THEN
        RAISE EXCEPTION 'fenced: partition % is at epoch %, caller holds %', p_sku, v_epoch, p_epoch
            USING ERRCODE = 'DL409';
    END IF;
    IF v_applied_seq <> p_applied_seq_before THEN
        RAISE EXCEPTION 'stale ledger: partition % applied up to %, caller assumed %', p_sku, v_applied_seq, p_applied_seq_before
            USING ERRCODE = 'DL412';
    END IF;

    INSERT INTO purchases (sku, idempotency_key, user_id, quantity, outcome, order_id, seq, epoch)
    SELECT p_sku, k, u, q, o, oid, s, p_epoch
      FROM UNNEST(p_keys, p_users, p_quantities, p_outcomes, p_order_ids, p_seqs) AS t(k, u, q, o, oid, s);
    GET DIAGNOSTICS v_inserted = ROW_COUNT;

    -- Stock moves by what the rows say was won, not by what the caller claims.
    SELECT coalesce(sum(q), 0) INTO v_won_units
      FROM UNNEST(p_quantities, p_outcomes) AS t(q, o) WHERE o = 'won';

    UPDATE drops
       SET remaining = remaining - v_won_units,
           won_units = won_units + v_won_units,
           updated_at = now()
     WHERE sku = p_sku
    RETURNING remaining INTO v_remaining;

    UPDATE partitions
       SET applied_seq = p_applied_seq_after,
           decided = decided + v_inserted,
           updated_at = now()
     WHERE sku = p_sku;

    RETURN v_remaining;
END;
$$;
