-- Reserved for the search-index migration of the read-path work (issue 32 keeps 0007): a
-- placeholder so that versions run without gaps on this branch. Replace it with that migration
-- when both land; no database outside tests has run it.
SELECT 1;
