-- Version 10: how many offline messages each user has, kept by a trigger on `offline_message`, so
-- that a push checks the user's limit without counting the user's rows. A row exists while its
-- user has messages. Pushes for one user run under that user's advisory lock (`offline_push`);
-- deletions take the counter's row lock. It can run again (the archive conversion tests rerun
-- every migration from 7): the counts are taken afresh.
CREATE TABLE IF NOT EXISTS offline_count (
    domain   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    n        BIGINT NOT NULL,
    PRIMARY KEY (domain, username)
);

DELETE FROM offline_count;
INSERT INTO offline_count (domain, username, n)
    SELECT domain, username, count(*) FROM offline_message GROUP BY domain, username;

CREATE OR REPLACE FUNCTION offline_count_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO offline_count (domain, username, n) VALUES (NEW.domain, NEW.username, 1)
            ON CONFLICT (domain, username) DO UPDATE SET n = offline_count.n + 1;
    ELSE
        UPDATE offline_count SET n = n - 1 WHERE domain = OLD.domain AND username = OLD.username;
        DELETE FROM offline_count
            WHERE domain = OLD.domain AND username = OLD.username AND n <= 0;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS offline_count_follow ON offline_message;
CREATE TRIGGER offline_count_follow AFTER INSERT OR DELETE ON offline_message
    FOR EACH ROW EXECUTE FUNCTION offline_count_follow();
