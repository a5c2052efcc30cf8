"""Identity: accounts, passwords, tokens and profiles."""
