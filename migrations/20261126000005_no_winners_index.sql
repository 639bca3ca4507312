-- `purchases_winners` (sku, user_id) WHERE outcome = 'won' served no query
-- of dropline's: per-user limits are kept by the processor's ledger, loaded
-- by SKU in place-in-line order (the (sku, seq) index). It cost one more
-- index entry, at a random place (user ids), for every winner, on the
-- commit path of a drop where everyone wins. Listing a SKU's winners reads
-- the SKU's rows through the primary key instead.
DROP INDEX purchases_winners;
