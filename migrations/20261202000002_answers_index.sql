-- A SKU's answers other than `sold_out` (winners, `limit_reached`,
-- `closed`), in line order: what a processor announces when a drop sells
-- out for good, and what every gateway reads to answer repeats of a
-- sold-out drop at its edge. Without this index both read every decision
-- of the SKU, a million rows for a drop of a million buyers, at the moment
-- of the sell-out. It costs an index entry per answer that is not
-- `sold_out`, at the SKU's right edge (places in line increase), and none
-- for the `sold_out` rows that are most of a hot drop.
CREATE INDEX purchases_answers ON purchases (sku, seq) WHERE outcome <> 'sold_out';
