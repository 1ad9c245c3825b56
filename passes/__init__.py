"""Graph-to-graph passes over `c2compile.ir.Graph` (see ../shared/DESIGN.md)."""
