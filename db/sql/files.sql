-- The functions that keep stored files in step with the rows that own them: their current
-- definition. db/routines.py applies this file after db/sql/organizations.sql.
--
-- A file lives outside the row that names it (in stored_files, or an object store), so a row
-- that goes, however it goes (the API, a cascade from its item, user or organization, psql),
-- leaves its file's key in released_files; vaultapi/housekeeping.py removes those files.


-- Trigger: attachments_released, sends_released (AFTER DELETE, each statement).
CREATE OR REPLACE FUNCTION pgwarden_files_released() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO released_files (key) SELECT file_key FROM old_rows WHERE file_key IS NOT NULL
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
