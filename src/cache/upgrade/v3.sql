-- Schema version 2 to 3: copies of remote inputs in progress, for `stat`.
CREATE TABLE download (
    -- object.key the copy will have.
    key TEXT PRIMARY KEY NOT NULL,
    -- Source path, as in the URL.
    path TEXT NOT NULL,
    -- Prefix of the backend it comes from.
    backend TEXT NOT NULL,
    -- Bytes in all, and copied so far.
    bytes_total INTEGER NOT NULL,
    bytes_done INTEGER NOT NULL,
    -- The process copying it: a row of a process that is gone is stale.
    pid INTEGER NOT NULL,
    -- Unix time (seconds) when it started.
    started INTEGER NOT NULL
) WITHOUT ROWID;
