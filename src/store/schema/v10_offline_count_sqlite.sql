-- Version 10: how many offline messages each user has, kept by triggers on `offline_message`, so
-- that a push checks the user's limit without counting the user's rows (a scan of the index as
-- long as the limit: with a large `max_per_user`, long enough to keep the other store threads
-- from the write lock). A row exists while its user has messages. It can run again (the archive
-- conversion tests rerun every migration from 7): the counts are taken afresh.
CREATE TABLE IF NOT EXISTS offline_count (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (domain, username)
) WITHOUT ROWID;

DELETE FROM offline_count;
INSERT INTO offline_count (domain, username, n)
    SELECT domain, username, count(*) FROM offline_message GROUP BY domain, username;

CREATE TRIGGER IF NOT EXISTS offline_count_insert AFTER INSERT ON offline_message BEGIN
    INSERT INTO offline_count (domain, username, n) VALUES (NEW.domain, NEW.username, 1)
        ON CONFLICT (domain, username) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER IF NOT EXISTS offline_count_delete AFTER DELETE ON offline_message BEGIN
    UPDATE offline_count SET n = n - 1 WHERE domain = OLD.domain AND username = OLD.username;
    DELETE FROM offline_count WHERE domain = OLD.domain AND username = OLD.username AND n <= 0;
END;
