-- Schema version 1 to 2: the indexes that let gc and reconcile walk a large
-- cache in batches instead of reading every row into memory.

-- gc walks objects least recently used first (size caps, free space).
CREATE INDEX object_accessed ON object (accessed);
-- reconcile asks, of each file it finds on disk, whether a row names it.
CREATE INDEX object_file ON object (file);
-- No query uses it, and every insert and access update paid for it.
DROP INDEX object_kind_accessed;
