-- memsweep store, version 4: per-example numbers as packed columns, ~30 bytes per memorization example × intervention
-- instead of ~1 kB of JSON rows (schemas/store.md says how to read them). After this script memsweep converts the
-- `examples` rows of an earlier store into these tables and drops `examples` (orchestrator/store/sqlite_store.cpp,
-- convert_example_rows); their detail is kept in example_details.

-- Per unit, intervention and value name: the value for each of the unit's examples [first, first + count), in
-- order, `count` fixed-width little-endian values (u8, u16, i32: integers; f32, f64: IEEE floats; a value an
-- example does not have is the NaN 0x7fc0dead / 0x7ff80000dead0000). `fact` 0: a metric the totals sum (exact_match,
-- acc, ...); 1: a number behind it (mismatch_token, min_top2_gap, loglikelihood.0, ...).
CREATE TABLE example_values (
  unit_id INTEGER NOT NULL REFERENCES units(id),
  intervention_id INTEGER NOT NULL REFERENCES interventions(id),
  name TEXT NOT NULL,
  fact INTEGER NOT NULL CHECK (fact IN (0, 1)),
  encoding TEXT NOT NULL CHECK (encoding IN ('u8', 'u16', 'i32', 'f32', 'f64')),
  data BLOB NOT NULL,
  UNIQUE (unit_id, intervention_id, name)
);

-- Each example's detail JSON (generated tokens, per-position top-two gaps, ...): only with [store] detail = "full".
CREATE TABLE example_details (
  unit_id INTEGER NOT NULL REFERENCES units(id),
  intervention_id INTEGER NOT NULL REFERENCES interventions(id),
  example_index INTEGER NOT NULL,
  detail_json TEXT NOT NULL,
  PRIMARY KEY (unit_id, intervention_id, example_index)
) WITHOUT ROWID;

-- The questions a researcher asks of a memorization study, in plain SQL (any sqlite3 reads them).
-- Every planned (model, dataset, intervention, example) of a memorization set and its exact match: 1 or 0; NULL
-- while its unit is not done.
CREATE VIEW exact_match AS
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < (SELECT MAX(count) FROM units))
SELECT m.name AS model, d.name AS dataset, d.role AS role, iv.name AS intervention, u.first + n.i AS example_index,
       CASE WHEN v.data IS NULL THEN NULL WHEN substr(v.data, n.i + 1, 1) = X'01' THEN 1 ELSE 0 END AS exact_match
FROM units u
JOIN datasets d ON d.id = u.dataset_id AND d.kind = 'memorization'
JOIN models m ON m.id = u.model_id
JOIN unit_interventions ui ON ui.unit_id = u.id
JOIN interventions iv ON iv.id = ui.intervention_id
JOIN n ON n.i < u.count
LEFT JOIN example_values v ON v.unit_id = u.id AND v.intervention_id = ui.intervention_id AND v.name = 'exact_match';

-- The rows that survive every intervention: exact match 1 under each one the study runs on them, all done.
CREATE VIEW surviving_rows AS
SELECT model, dataset, role, example_index, COUNT(*) AS interventions
FROM exact_match
GROUP BY model, dataset, role, example_index
HAVING COUNT(exact_match) = COUNT(*) AND MIN(exact_match) = 1;

-- The rows an intervention flips: its exact match differs from the baseline's (1 -> 0: the intervention removed
-- the memorization; 0 -> 1: it made the model reproduce the row).
-- (The baseline's rows are materialized so that SQLite indexes them: joined as a plain view, the baseline's row of
-- each example was searched for among all of its dataset's rows.)
CREATE VIEW flipped_rows AS
WITH b AS MATERIALIZED (SELECT model, dataset, example_index, exact_match FROM exact_match WHERE intervention = 'baseline')
SELECT x.model, x.dataset, x.role, x.intervention, x.example_index, b.exact_match AS baseline_exact_match, x.exact_match
FROM exact_match x
JOIN b ON b.model = x.model AND b.dataset = x.dataset AND b.example_index = x.example_index
WHERE x.intervention <> 'baseline' AND x.exact_match <> b.exact_match;
