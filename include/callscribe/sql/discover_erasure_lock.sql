-- Taken shared first in a registration's transaction, exclusive by an erasure (erase_lock.sql):
-- an erasure cannot see the rows a registration has not committed, nor that registration the
-- erasure's key hash, so an erasure waits for registrations under way and registrations wait
-- for it. Without this, a key erased during a discovery was registered all the same (pending,
-- then transcribed), its upload before or after the erasure alike.
SELECT pg_advisory_xact_lock_shared(hashtext('callscribe_erasures'))
