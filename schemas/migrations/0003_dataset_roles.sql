-- memsweep store, version 3: each dataset's role, which the report reads instead of guessing: "memorized" (the set
-- whose memorization the interventions remove), "control" (a memorization set the model does not reproduce),
-- "benchmark", "divergence". A study file sets it with `role` (schemas/study.md); earlier stores get the default of
-- their kind.
ALTER TABLE datasets ADD COLUMN role TEXT NOT NULL DEFAULT 'benchmark';
UPDATE datasets SET role = CASE kind WHEN 'memorization' THEN 'memorized' WHEN 'divergence' THEN 'divergence' ELSE 'benchmark' END;
