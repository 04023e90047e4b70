-- threadstore schema, version 9: an index for attribute lookups (find_by_attributes,
-- list_threads(attributes=)). SQLite has no index on JSON equality, so those lookups tested
-- every thread (207 ms at 100,000 threads). thread_attribute_values holds each thread's top-level
-- attributes whose value is a string or a number, kept by triggers in plain SQL (any connection
-- writing the file keeps it right). A lookup reads the threads holding one wanted key = value and
-- still tests every wanted key in Python (threadstore.matching), so the index only narrows:
-- numbers compare as SQLite compares them (1 = 1.0, as JSON equality has it) and a duplicate key
-- in an adopted document leaves both values as candidates. Every row is kept.
CREATE TABLE thread_attribute_values (
    thread_id TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     ANY  NOT NULL,  -- the JSON string or number (json_each's atom)
    PRIMARY KEY (thread_id, key, value)
) STRICT, WITHOUT ROWID;
CREATE INDEX thread_attribute_values_idx ON thread_attribute_values (key, value);

INSERT INTO thread_attribute_values (thread_id, key, value)
SELECT DISTINCT t.id, a.key, a.atom
  FROM threads AS t, json_each(t.attributes) AS a
 WHERE a.type IN ('text', 'integer', 'real');

CREATE TRIGGER threads_attributes_inserted AFTER INSERT ON threads
BEGIN
    INSERT INTO thread_attribute_values (thread_id, key, value)
    SELECT DISTINCT new.id, key, atom FROM json_each(new.attributes) WHERE type IN ('text', 'integer', 'real');
END;

CREATE TRIGGER threads_attributes_updated AFTER UPDATE OF attributes ON threads
WHEN old.attributes IS NOT new.attributes
BEGIN
    DELETE FROM thread_attribute_values WHERE thread_id = old.id;
    INSERT INTO thread_attribute_values (thread_id, key, value)
    SELECT DISTINCT new.id, key, atom FROM json_each(new.attributes) WHERE type IN ('text', 'integer', 'real');
END;

CREATE TRIGGER threads_attributes_deleted AFTER DELETE ON threads
BEGIN
    DELETE FROM thread_attribute_values WHERE thread_id = old.id;
END;
