-- Cost rollups read a window of hours, but `session_costs` is ordered by session: without an
-- index every read scans the whole month partitions it touches. The minmax index lets a window
-- skip the granules whose hours lie outside it, which pays off when session ids grow with time
-- (ULIDs, UUIDv7, counters); with random ids it costs a few bytes per granule and skips little.
ALTER TABLE session_costs ADD INDEX IF NOT EXISTS hour_minmax hour TYPE minmax GRANULARITY 1;

ALTER TABLE session_costs MATERIALIZE INDEX hour_minmax;
