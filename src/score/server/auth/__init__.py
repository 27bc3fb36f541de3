"""Who is asking (token verification) and whether they may (the policy, a pure function)."""
