"""Load tests: seeded agent sessions and the benchmarks that push them through Spanstream."""
