-- memsweep store, version 2: a study grows (--extend) without redoing work or counting anything twice.
-- Every version of the study file registered on the store is kept, with what it added; a unit records the version
-- that planned it. Units are planned so that each (model, dataset, intervention, example) of the study is in exactly
-- one unit (orchestrator/study/study.h, expand_units): an extension plans only the examples and interventions no
-- unit covers yet.

CREATE TABLE study_versions (
  version INTEGER PRIMARY KEY,   -- 1, 2, ...: the order in which the file's versions were registered
  file_hash TEXT NOT NULL,
  file_text TEXT NOT NULL,
  registered_at TEXT NOT NULL,
  units_added INTEGER NOT NULL   -- units this version planned (the first: the whole grid)
);

-- A version-1 store holds one version: the file it was made with, or (after --extend) its latest; the units recorded
-- before this migration are counted under it.
INSERT INTO study_versions (version, file_hash, file_text, registered_at, units_added)
  SELECT 1, file_hash, file_text, updated_at, (SELECT COUNT(*) FROM units) FROM study;

ALTER TABLE units ADD COLUMN study_version INTEGER NOT NULL DEFAULT 1;

-- The planner reads a model and dataset's units to find what they cover.
CREATE INDEX units_by_model_dataset ON units(model_id, dataset_id);
