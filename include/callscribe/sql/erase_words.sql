-- The words of the versions :ids, before they go: erase_words_prune.sql removes from the lexicon
-- those no other segment holds (a name said once must not outlive an erased call).
-- Stop words (no lexeme) are in every call and stay.
WITH erased AS (
    SELECT DISTINCT callscribe_words(text_redacted) AS word FROM segments
    WHERE recording_id = ANY(CAST(:ids AS bigint[]))
)
SELECT word FROM erased WHERE to_tsvector('english', word) <> ''::tsvector
