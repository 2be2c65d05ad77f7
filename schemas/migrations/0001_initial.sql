-- memsweep store, version 1. Only rank 0 writes. A unit's results and its status change commit together.
-- schema_version is created by the migration runner before this script runs.

-- The study the store belongs to: the file's SHA-256 and text (one row; --extend replaces it).
CREATE TABLE study (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  name TEXT NOT NULL,
  file_hash TEXT NOT NULL,
  file_text TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

-- One row per `memsweep run` on the store: what produced the results.
CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  study_hash TEXT NOT NULL,
  memsweep_version TEXT NOT NULL,
  git_commit TEXT NOT NULL,
  libtorch_version TEXT NOT NULL,
  host TEXT NOT NULL,
  ranks INTEGER NOT NULL,
  started_at TEXT NOT NULL,
  ended_at TEXT,
  outcome TEXT            -- finished | interrupted (SIGTERM) | drained (SIGUSR1) | error: ...
);

CREATE TABLE models (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  path TEXT NOT NULL,
  dtype TEXT NOT NULL,
  num_layers INTEGER NOT NULL,
  tokenizer_hash TEXT NOT NULL   -- empty when the model has no tokenizer
);

CREATE TABLE datasets (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  path TEXT NOT NULL,
  options_json TEXT NOT NULL,
  content_hash TEXT NOT NULL,    -- SHA-256 of the data file
  num_examples INTEGER NOT NULL
);

CREATE TABLE interventions (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE      -- canonical name (worker/base/intervention.h)
);

CREATE TABLE units (
  id INTEGER PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,      -- model|dataset|first+count|interventions: independent of ranks and batch size
  model_id INTEGER NOT NULL REFERENCES models(id),
  dataset_id INTEGER NOT NULL REFERENCES datasets(id),
  first INTEGER NOT NULL,
  count INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
  attempt INTEGER NOT NULL DEFAULT 0,    -- id of the latest attempt (0: never started)
  failures INTEGER NOT NULL DEFAULT 0,   -- attempts that threw
  batch_size INTEGER,                    -- set when a retry after out-of-memory halves it
  worker_rank INTEGER,
  worker_host TEXT,
  started_at TEXT,
  finished_at TEXT,
  seconds REAL,
  error TEXT
);
CREATE INDEX units_by_status ON units(status);

CREATE TABLE unit_interventions (
  unit_id INTEGER NOT NULL REFERENCES units(id),
  position INTEGER NOT NULL,
  intervention_id INTEGER NOT NULL REFERENCES interventions(id),
  PRIMARY KEY (unit_id, position)
) WITHOUT ROWID;

-- Every attempt of every unit, failures and timeouts included.
CREATE TABLE attempts (
  unit_id INTEGER NOT NULL REFERENCES units(id),
  attempt INTEGER NOT NULL,
  run_id INTEGER NOT NULL REFERENCES runs(id),
  worker_rank INTEGER NOT NULL,
  worker_host TEXT NOT NULL,
  device TEXT NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  outcome TEXT,                  -- done | failed | timeout | requeued
  error TEXT,
  PRIMARY KEY (unit_id, attempt)
) WITHOUT ROWID;

-- ShardResult totals per unit and intervention (additive across units).
CREATE TABLE aggregates (
  unit_id INTEGER NOT NULL REFERENCES units(id),
  intervention_id INTEGER NOT NULL REFERENCES interventions(id),
  totals_json TEXT NOT NULL,
  PRIMARY KEY (unit_id, intervention_id)
) WITHOUT ROWID;

-- Per-example rows: ~10^8 for a full Pythia-12B study, hence WITHOUT ROWID and JSON values.
CREATE TABLE examples (
  unit_id INTEGER NOT NULL,
  intervention_id INTEGER NOT NULL,
  example_index INTEGER NOT NULL,
  values_json TEXT NOT NULL,
  detail_json TEXT NOT NULL,
  PRIMARY KEY (unit_id, intervention_id, example_index)
) WITHOUT ROWID;
