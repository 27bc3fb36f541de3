"""Where Score learns which study owns an object, its access level and its analysis state."""
