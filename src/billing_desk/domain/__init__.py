"""Pure business rules: money, states, canonical hashing. Standard library only."""
