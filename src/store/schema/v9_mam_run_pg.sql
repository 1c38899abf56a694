-- Version 9 changes SQLite's archive layout only (v9_mam_run_sqlite.sql): PostgreSQL keeps one
-- row per entry in `mam_row`.
SELECT 1;
