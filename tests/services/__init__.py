"""Real external services the tests start: each module runs one (SeaweedFS, Azurite, GCS emulator) and
provisions fresh buckets for a test; ``proxy`` sits between clients and a store to count and corrupt."""
