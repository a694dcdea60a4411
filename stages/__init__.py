"""Thin DVC stage entry points: `python -m stages.<name> [--round rNN]`. Each reads params.yaml and its
input files, calls one lth function, and writes its outputs (atomically)."""
