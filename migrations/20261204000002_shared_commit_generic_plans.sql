-- The shared commit plans its statements once per connection, not at
-- every call. Postgres plans a PL/pgSQL function's statements with the
-- call's own arguments for the first five calls on a connection, then
-- keeps a generic plan only if it looks no dearer; for this function's
-- data-modifying CTEs over parameter arrays it never does, so every call
-- planned them afresh: 400 calls of 6 batches of 4 decisions took
-- 396-407 ms, against 249-294 ms with a generic plan (alternating, one
-- session each; with 50,000 drops 457-464 ms against 256-282 ms, so the
-- generic plan still finds its rows by index). A 200-SKU burst makes
-- about 70 such calls. The one-SKU function plans cheaply either way
-- (57-67 ms for 400 calls in both modes) and is left as it is.
ALTER FUNCTION dropline_apply_batches(
    text[], bigint[], bigint[], bigint[], bigint[], integer[], text[], text[],
    integer[], text[], uuid[], bigint[], integer[], text[], text[], integer[],
    text[], bigint[]
) SET plan_cache_mode = force_generic_plan;
