"""Runtime: workspaces, the numpy reference executor (and later compiled nets)."""
