"""The serving tier: the host's rules for a shared instance (hosting: limits, access, the door for heavy
work), the bounded job queue (jobs), engine processes (compute) and checked scenario uploads (uploads)."""
