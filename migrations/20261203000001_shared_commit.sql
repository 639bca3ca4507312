-- One transaction for the ready batches of several SKUs. A drop of 200
-- sizes gave Postgres a commit, a lock and five statements per SKU per
-- batch of two or three decisions; a processor now hands it every batch
-- ready at once. The rules of `dropline_apply_batch` hold for each batch
-- on its own: its partition row is locked, and it is written only if the
-- caller still holds the partition's epoch and applied place in line. A
-- batch that does not is skipped and reported, not raised: one stale
-- fence must not roll back the other SKUs' batches.
--
-- Batches are given column by column (one element per batch, in SKU
-- order); decisions and operator actions name their batch by its place
-- (from 1) in those columns.
CREATE FUNCTION dropline_apply_batches(
    p_skus               text[],
    p_epochs             bigint[],
    p_applied_seqs_before bigint[],
    p_applied_seqs_after bigint[],
    p_closed_seqs        bigint[],
    p_batches            integer[],
    p_keys               text[],
    p_users              text[],
    p_quantities         integer[],
    p_outcomes           text[],
    p_order_ids          uuid[],
    p_seqs               bigint[],
    p_op_batches         integer[],
    p_op_ids             text[],
    p_op_kinds           text[],
    p_op_units           integer[],
    p_op_operators       text[],
    p_op_seqs            bigint[]
) RETURNS TABLE (batch integer, outcome text, remaining integer)
LANGUAGE plpgsql AS $$
DECLARE
    -- The batches whose caller still holds the partition: written.
    v_held integer[];
BEGIN
    IF (SELECT count(DISTINCT s) FROM unnest(p_skus) AS t(s)) <> cardinality(p_skus) THEN
        -- Two batches of one SKU would both be checked against the same
        -- applied place in line.
        RAISE EXCEPTION 'a SKU appears twice in one shared commit' USING ERRCODE = 'DL400';
    END IF;
    -- Every shared commit locks its rows in SKU order, so two of them
    -- (a stale owner's and the new owner's) cannot deadlock. A lease
    -- renewal (one statement, any order) still can with a stale owner's:
    -- Postgres breaks it, the renewal is tried again a third of a lease
    -- later and the batches are committed one by one; fencing is not at
    -- stake either way.
    PERFORM 1 FROM partitions WHERE sku = ANY (p_skus) ORDER BY sku FOR UPDATE;

    SELECT coalesce(array_agg(b.i), '{}') INTO v_held
      FROM unnest(p_skus, p_epochs, p_applied_seqs_before) WITH ORDINALITY AS b(sku, epoch, seq_before, i)
      JOIN partitions p ON p.sku = b.sku
     WHERE p.epoch = b.epoch AND p.applied_seq = b.seq_before;

    INSERT INTO purchases (sku, idempotency_key, user_id, quantity, outcome, order_id, seq, epoch)
    SELECT p_skus[d.b], d.k, d.u, d.q, d.o, d.oid, d.s, p_epochs[d.b]
      FROM unnest(p_batches, p_keys, p_users, p_quantities, p_outcomes, p_order_ids, p_seqs)
           AS d(b, k, u, q, o, oid, s)
     WHERE d.b = ANY (v_held);

    INSERT INTO operations (sku, operation_id, kind, units, operator, seq, epoch)
    SELECT p_skus[c.b], c.op, c.kind, c.n, c.who, c.s, p_epochs[c.b]
      FROM unnest(p_op_batches, p_op_ids, p_op_kinds, p_op_units, p_op_operators, p_op_seqs)
           AS c(b, op, kind, n, who, s)
     WHERE c.b = ANY (v_held);

    -- Stock moves by what the rows say, not by what the caller claims.
    RETURN QUERY
    WITH decided AS (
        SELECT d.b, count(*) AS n, coalesce(sum(d.q) FILTER (WHERE d.o = 'won'), 0) AS won
          FROM unnest(p_batches, p_quantities, p_outcomes) AS d(b, q, o)
         WHERE d.b = ANY (v_held)
         GROUP BY d.b
    ), restocked AS (
        SELECT c.b, sum(c.n) AS units
          FROM unnest(p_op_batches, p_op_kinds, p_op_units) AS c(b, kind, n)
         WHERE c.b = ANY (v_held) AND c.kind = 'restock'
         GROUP BY c.b
    ), moves AS (
        SELECT h.i, p_skus[h.i] AS sku, p_closed_seqs[h.i] AS closed_seq,
               p_applied_seqs_after[h.i] AS seq_after,
               coalesce(d.n, 0)::integer AS decided, coalesce(d.won, 0)::integer AS won,
               coalesce(r.units, 0)::integer AS restocked
          FROM unnest(v_held) AS h(i)
          LEFT JOIN decided d ON d.b = h.i
          LEFT JOIN restocked r ON r.b = h.i
    ), stock AS (
        UPDATE drops
           SET remaining = drops.remaining + m.restocked - m.won,
               restocked = drops.restocked + m.restocked,
               won_units = drops.won_units + m.won,
               -- The close decided in line closes admission too, whatever
               -- an operator's own status change did.
               closed_seq = coalesce(drops.closed_seq, m.closed_seq),
               closed_at = CASE WHEN drops.closed_seq IS NULL AND m.closed_seq IS NOT NULL
                                THEN now() ELSE drops.closed_at END,
               status = CASE WHEN m.closed_seq IS NOT NULL THEN 'closed' ELSE drops.status END,
               admission_version = CASE WHEN m.closed_seq IS NOT NULL AND drops.status <> 'closed'
                                        THEN nextval('drops_admission_version')
                                        ELSE drops.admission_version END,
               updated_at = now()
          FROM moves m
         WHERE drops.sku = m.sku
     RETURNING m.i, drops.remaining
    ), places AS (
        UPDATE partitions
           SET applied_seq = m.seq_after,
               decided = partitions.decided + m.decided,
               updated_at = now()
          FROM moves m
         WHERE partitions.sku = m.sku
    )
    SELECT b.i::integer,
           CASE WHEN s.i IS NOT NULL THEN 'applied'
                WHEN p.epoch <> b.epoch THEN 'fenced'
                -- Another applied place in line, or no partition at all.
                ELSE 'stale' END,
           s.remaining
      FROM unnest(p_skus, p_epochs) WITH ORDINALITY AS b(sku, epoch, i)
      LEFT JOIN partitions p ON p.sku = b.sku
      LEFT JOIN stock s ON s.i = b.i
     ORDER BY b.i;
END;
$$;
