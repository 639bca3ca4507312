-- The life of a drop after the decision: scheduled, open, paused, closed.
-- Admission (scheduled, pause, resume) is the gateways' to enforce; close
-- and restock are entries in the SKU's own line, decided by its owner in
-- its batch transaction like purchases, and recorded here once per
-- operation id.

-- 1. States. A scheduled drop knows when it opens.
ALTER TABLE drops DROP CONSTRAINT drops_status_check;
ALTER TABLE drops ADD CONSTRAINT drops_status_check
    CHECK (status IN ('scheduled', 'open', 'paused', 'closed'));
ALTER TABLE drops
    ADD COLUMN opens_at timestamptz,
    -- Where the close stands in line, and when it was decided.
    ADD COLUMN closed_seq bigint CHECK (closed_seq > 0),
    ADD COLUMN closed_at timestamptz,
    -- Each admission change takes the next value of one sequence: a gateway
    -- reports the highest it has applied (table gateways), so a drain knows
    -- when every gateway refuses a closed drop.
    ADD COLUMN admission_version bigint NOT NULL DEFAULT 0;
ALTER TABLE drops ADD CONSTRAINT drops_scheduled_has_an_opening
    CHECK (status <> 'scheduled' OR opens_at IS NOT NULL);
ALTER TABLE drops ADD CONSTRAINT drops_close_decided_in_line
    CHECK ((closed_seq IS NULL) = (closed_at IS NULL));
CREATE SEQUENCE drops_admission_version;

-- 2. An intent that stood in line after the close is decided `closed`.
ALTER TABLE purchases DROP CONSTRAINT purchases_outcome_check;
ALTER TABLE purchases ADD CONSTRAINT purchases_outcome_check
    CHECK (outcome IN ('won', 'sold_out', 'limit_reached', 'closed'));

-- 3. Operator actions decided in a SKU's line: each operation id once, so a
--    restock retried after a lost answer adds its units once.
CREATE TABLE operations (
    sku           text COLLATE "C" NOT NULL REFERENCES drops (sku),
    operation_id  text COLLATE "C" NOT NULL CHECK (length(operation_id) BETWEEN 1 AND 64),
    kind          text NOT NULL CHECK (kind IN ('close', 'restock')),
    units         integer CHECK (units > 0),
    operator      text NOT NULL CHECK (length(operator) BETWEEN 1 AND 128),
    seq           bigint NOT NULL CHECK (seq > 0),
    epoch         bigint NOT NULL,
    decided_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT operations_once_per_id PRIMARY KEY (sku, operation_id),
    CONSTRAINT operations_one_per_seq UNIQUE (sku, seq),
    CONSTRAINT operations_units_iff_restock CHECK ((kind = 'restock') = (units IS NOT NULL))
);

-- 4. What the owner of a partition records about its progress, for
--    operators (`dropctl status`, the live page) without a NATS request per
--    SKU; and why a partition halted (an entry of a kind it does not know).
ALTER TABLE partitions
    ADD COLUMN waiting_intents bigint NOT NULL DEFAULT 0 CHECK (waiting_intents >= 0),
    ADD COLUMN oldest_waiting_at timestamptz,
    ADD COLUMN decisions_per_s double precision NOT NULL DEFAULT 0 CHECK (decisions_per_s >= 0),
    ADD COLUMN progress_at timestamptz,
    ADD COLUMN halted text;

-- 5. Live gateways and the admission version each has applied.
CREATE TABLE gateways (
    instance_id        text PRIMARY KEY CHECK (length(instance_id) BETWEEN 1 AND 200),
    admission_version  bigint NOT NULL DEFAULT 0,
    heartbeat_at       timestamptz NOT NULL DEFAULT now()
);

-- 6. The batch, now with the operator actions decided in it. Same rules as
--    before it: lock the partition row, refuse a stale epoch or applied
--    sequence, then write everything in one statement.
DROP FUNCTION dropline_apply_batch(text, bigint, bigint, bigint, text[], text[], integer[], text[], uuid[], bigint[]);

CREATE FUNCTION dropline_apply_batch(
    p_sku                text,
    p_epoch              bigint,
    p_applied_seq_before bigint,
    p_applied_seq_after  bigint,
    p_keys               text[],
    p_users              text[],
    p_quantities         integer[],
    p_outcomes           text[],
    p_order_ids          uuid[],
    p_seqs               bigint[],
    p_op_ids             text[],
    p_op_kinds           text[],
    p_op_units           integer[],
    p_op_operators       text[],
    p_op_seqs            bigint[],
    p_closed_seq         bigint
) RETURNS integer  -- remaining stock after the batch
LANGUAGE plpgsql AS $$
DECLARE
    v_epoch       bigint;
    v_applied_seq bigint;
    v_inserted    integer;
    v_remaining   integer;
    v_won_units   integer;
    v_restocked   integer;
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

    INSERT INTO operations (sku, operation_id, kind, units, operator, seq, epoch)
    SELECT p_sku, op, kind, n, who, s, p_epoch
      FROM UNNEST(p_op_ids, p_op_kinds, p_op_units, p_op_operators, p_op_seqs) AS t(op, kind, n, who, s);

    -- Stock moves by what the rows say, not by what the caller claims.
    SELECT coalesce(sum(q), 0) INTO v_won_units
      FROM UNNEST(p_quantities, p_outcomes) AS t(q, o) WHERE o = 'won';
    SELECT coalesce(sum(n), 0) INTO v_restocked
      FROM UNNEST(p_op_kinds, p_op_units) AS t(kind, n) WHERE kind = 'restock';

    UPDATE drops
       SET remaining = remaining + v_restocked - v_won_units,
           restocked = restocked + v_restocked,
           won_units = won_units + v_won_units,
           -- The close decided in line closes admission too, whatever an
           -- operator's own status change did.
           closed_seq = coalesce(closed_seq, p_closed_seq),
           closed_at = CASE WHEN closed_seq IS NULL AND p_closed_seq IS NOT NULL THEN now() ELSE closed_at END,
           status = CASE WHEN p_closed_seq IS NOT NULL THEN 'closed' ELSE status END,
           admission_version = CASE WHEN p_closed_seq IS NOT NULL AND status <> 'closed'
                                    THEN nextval('drops_admission_version') ELSE admission_version END,
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
