-- The loaded transcripts' words (callscribe_words: lower case, letters only), for similar-word
-- search. The loader sends the distinct whitespace-separated tokens of the redacted texts and the
-- words are made from them here, by the function a deletion's pruning (callscribe_forget_words)
-- uses on whole texts: whitespace is never a letter, so the words are the same either way (and
-- this is about 50 times cheaper than splitting every text again). The lock, shared, waits for a
-- pruning under way (so a word it removes is added back) and holds pruning off until this load
-- commits.
SELECT pg_advisory_xact_lock_shared(hashtext('callscribe_lexicon'));

INSERT INTO lexicon (word)
SELECT w FROM (SELECT DISTINCT callscribe_words(t) AS w FROM unnest(CAST(:tokens AS text[])) AS t) AS words
ORDER BY w  -- loads at once wait on a shared new word in the same order: no deadlock
ON CONFLICT (word) DO NOTHING
