"""The spec language: safe YAML with positions, the pydantic models, diagnostics at file:line:col,
includes, blocks and ``repeat``, ``--set`` overrides and the JSON Schema. Knows the ops' attribute
schemas; knows nothing of graphs, backends, training or tuning."""
