-- threadstore schema, version 2: the indexes behind search, lookups and aliases.

-- The text content search looks at: the content string, or the text parts of a list of parts
-- joined by newlines; NULL when there is none. Twin of threadstore.matching.content_text.
CREATE FUNCTION threadstore_content_text(content jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE jsonb_typeof(content)
           WHEN 'string' THEN content #>> '{}'
           WHEN 'array' THEN (SELECT string_agg(part ->> 'text', E'\n' ORDER BY position)
                                FROM jsonb_array_elements(content) WITH ORDINALITY AS p (part, position)
                               WHERE jsonb_typeof(part) = 'object'
                                 AND part -> 'type' = '"text"'::jsonb
                                 AND jsonb_typeof(part -> 'text') = 'string')
       END;

-- {platform: [its scalar values]} for every platform whose entry is an object, so "has this
-- reference as one of its values" is a containment test a GIN index answers.
-- Twin of threadstore.matching.platform_values.
CREATE FUNCTION threadstore_platform_values(platforms jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT coalesce(jsonb_object_agg(p.key,
                            (SELECT coalesce(jsonb_agg(v.value), '[]'::jsonb)
                               FROM jsonb_each(p.value) AS v
                              WHERE jsonb_typeof(v.value) NOT IN ('object', 'array'))),
                        '{}'::jsonb)
          FROM jsonb_each(platforms) AS p
         WHERE jsonb_typeof(p.value) = 'object');

-- {keys[1]: {keys[2]: ... value}}: the containment form of "the value at this key path".
CREATE FUNCTION threadstore_nested(keys text[], value jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    nested jsonb := value;
BEGIN
    FOR i IN REVERSE coalesce(array_length(keys, 1), 0) .. 1 LOOP
        nested := jsonb_build_object(keys[i], nested);
    END LOOP;
    RETURN nested;
END
$$;

-- Containment (@>) lookups; jsonb_path_ops indexes are smaller and faster for exactly that.
CREATE INDEX threads_attributes_idx ON threads USING gin (attributes jsonb_path_ops);
CREATE INDEX threads_platforms_idx ON threads USING gin (platforms jsonb_path_ops);
CREATE INDEX threads_source_idx ON threads USING gin (source jsonb_path_ops);
CREATE INDEX threads_platform_values_idx ON threads
    USING gin (threadstore_platform_values(platforms) jsonb_path_ops);
CREATE INDEX messages_attributes_idx ON messages USING gin (attributes jsonb_path_ops);
CREATE INDEX messages_platforms_idx ON messages USING gin (platforms jsonb_path_ops);

-- Trigram indexes let PostgreSQL answer title and content searches (~*) from an index. They
-- need the pg_trgm extension; where it cannot be created (not installed, or no privilege), the
-- searches still work, by scanning. Installing pg_trgm later: see the README.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'threadstore: pg_trgm is unavailable (%); searches will not use trigram indexes', SQLERRM;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_opclass WHERE opcname = 'gin_trgm_ops' AND pg_opclass_is_visible(oid)) THEN
        CREATE INDEX threads_title_trgm_idx ON threads USING gin (title gin_trgm_ops);
        CREATE INDEX messages_content_trgm_idx ON messages
            USING gin (threadstore_content_text(content) gin_trgm_ops);
    END IF;
END
$$;
