-- Version 8 changes the archive's tables on SQLite only (each message's stanza stored once, see
-- v8_mam_msg_sqlite.sql). PostgreSQL keeps version 7's `mam_row`, the stanza in each owner's row:
-- there every inserted tuple costs more than its bytes (a heap tuple and its index entries, each
-- with its WAL record), and the split layout (fewer bytes, but eight insertions per message instead
-- of six) made `max` with the archive on slower (docs/BENCHMARKS.md, "Message archive").
SELECT 1;
