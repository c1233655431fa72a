-- The loaded segments' words (lower case, letters only: loading.NOT_LETTERS, callscribe_words), for
-- similar-word search. Sorted by the loader, so loads running at once wait on a shared new word
-- in the same order and never deadlock.
INSERT INTO lexicon (word)
SELECT unnest(CAST(:words AS text[]))
ON CONFLICT (word) DO NOTHING
