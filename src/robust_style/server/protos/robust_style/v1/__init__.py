"""Generated package (scripts/gen_protos.py)."""
