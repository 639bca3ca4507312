-- Less work per purchase row on the hot insert path (`just bench`: one
-- `dropline_apply_batch` inserts up to a whole batch of rows). The promises
-- stay in the database; they are checked per statement instead of per row.

-- 1. A purchase's drop must exist. The row-level foreign key ran one lookup
--    and one row lock on `drops` for every inserted purchase. One check per
--    statement over the inserted rows does the same job (below, once the
--    columns have their new collation).
ALTER TABLE purchases DROP CONSTRAINT purchases_sku_fkey;

-- 2. Keys, users and SKUs are identifiers, not prose: compare them bytewise.
--    Under the database's default (C.UTF-8 here) every index comparison went
--    through strcoll, and every index entry of a SKU starts with that SKU.
--    SKUs change in every table at once, so that joins on them keep one
--    collation.
ALTER TABLE partitions DROP CONSTRAINT partitions_sku_fkey;
ALTER TABLE drops ALTER COLUMN sku TYPE text COLLATE "C";
ALTER TABLE partitions ALTER COLUMN sku TYPE text COLLATE "C";
ALTER TABLE partitions ADD CONSTRAINT partitions_sku_fkey FOREIGN KEY (sku) REFERENCES drops (sku);
ALTER TABLE purchases
    ALTER COLUMN sku TYPE text COLLATE "C",
    ALTER COLUMN idempotency_key TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C";

CREATE FUNCTION dropline_purchases_have_drops() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_sku text;
BEGIN
    SELECT n.sku INTO v_sku
      FROM (SELECT DISTINCT sku FROM new_purchases) n
     WHERE NOT EXISTS (SELECT 1 FROM drops d WHERE d.sku = n.sku)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'purchase for unknown drop %', v_sku USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER purchases_reference_drops_on_insert
    AFTER INSERT ON purchases REFERENCING NEW TABLE AS new_purchases
    FOR EACH STATEMENT EXECUTE FUNCTION dropline_purchases_have_drops();
CREATE TRIGGER purchases_reference_drops_on_update
    AFTER UPDATE ON purchases REFERENCING NEW TABLE AS new_purchases
    FOR EACH STATEMENT EXECUTE FUNCTION dropline_purchases_have_drops();

-- The other side of the foreign key: a drop with purchases can be neither
-- deleted nor renamed.
CREATE FUNCTION dropline_drop_keeps_purchases() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM purchases WHERE sku = OLD.sku) THEN
        RAISE EXCEPTION 'drop % has purchases', OLD.sku USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE TRIGGER drops_keep_purchases
    BEFORE DELETE OR UPDATE OF sku ON drops
    FOR EACH ROW EXECUTE FUNCTION dropline_drop_keeps_purchases();

-- 3. Order ids are unique, but only winners have one: a plain UNIQUE index
--    also stored an entry for every NULL (every sold_out and limit_reached).
ALTER TABLE purchases DROP CONSTRAINT purchases_order_id_key;
CREATE UNIQUE INDEX purchases_order_ids ON purchases (order_id) WHERE order_id IS NOT NULL;
