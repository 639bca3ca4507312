-- An intent's `seq` is now its place in line: the stream sequence of the
-- message that carries it times 1024, plus its slot in that message (a
-- gateway publishes the purchases that arrive together as one message).
-- Every message written before held one intent, at slot 0: existing
-- sequences move to their message's first place. Order ids are stored, so
-- they stay as they are.
UPDATE purchases SET seq = seq * 1024;
UPDATE partitions SET applied_seq = applied_seq * 1024;
