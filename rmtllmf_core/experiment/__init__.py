"""The experiment tier: one run. The Scenario schema (scenario), its presets and URL codec, the
pipeline's stages (pipeline), the per-process state (runtime) and the typed Result (result)."""
