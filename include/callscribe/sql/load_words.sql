-- The loaded transcripts' words (callscribe_words: lower case, letters only), for similar-word
-- search: from the staged transcript rows, in the database, so the words added are exactly those
-- a deletion's pruning (callscribe_forget_words) computes. The lock, shared, waits for a pruning
-- under way (so a word it removes is added back) and holds pruning off until this load commits.
SELECT pg_advisory_xact_lock_shared(hashtext('callscribe_lexicon'));

INSERT INTO lexicon (word)
SELECT w FROM (SELECT DISTINCT callscribe_words(text_redacted) AS w FROM stage_transcripts) AS words
ORDER BY w  -- loads at once wait on a shared new word in the same order: no deadlock
ON CONFLICT (word) DO NOTHING
