"""Binary-classifier metrics and binomial intervals."""
