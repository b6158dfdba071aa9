"""`export-prefix` / `veil export`: checkpoint -> prefix -> backend artifacts + manifest."""
