"""Use cases on domain values: validation, embed-if-text, scoring policy. No SQL, no faiss."""
