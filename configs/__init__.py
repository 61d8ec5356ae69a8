"""Run configs: one ml_collections Python file per model, each with `get_config(arg=None)`.

Shared blocks (argument parsing, model / sharding / optimizer blocks) live in `configs.common`.
"""
