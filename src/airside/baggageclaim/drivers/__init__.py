"""Volume drivers, one module each, side by side; they never import each other (import-linter).
`airside.baggageclaim.detect` chooses one."""
