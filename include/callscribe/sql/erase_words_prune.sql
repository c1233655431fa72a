-- After erase_apply.sql: of the erased call's words (erase_words.sql), those no segment holds now.
DELETE FROM lexicon AS l
WHERE l.word = ANY(CAST(:words AS text[]))
  AND NOT EXISTS (
      SELECT 1 FROM segments AS s
      WHERE s.tsv_pair @@ plainto_tsquery('english', l.word)
        AND s.text_redacted ~* ('(^|[^[:alpha:]])' || l.word || '($|[^[:alpha:]])')
  )
