"""The export job: `export-prefix` / `veil export` (checkpoint -> prefix -> backend artifacts + manifest)."""
