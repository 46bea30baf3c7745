"""Module 2: automatic differentiation — a scalar reverse-mode engine, custom autograd Functions,
and gradient diagnostics. Import from the concept modules."""
