-- Tags of heartbeat checks (`tags: [nightly, trading]` in a manifest): labels that group checks
-- across projects for a filter and a status badge. Stored as the tags joined by single spaces
-- (a tag holds no space), '' for none; a tag's checks are found by matching ` TAG ` in
-- ` tags ` (a LIKE with the pattern's own `_` escaped), which both dialects read alike.

ALTER TABLE checks ADD COLUMN tags TEXT NOT NULL DEFAULT '';
