"""The rules of RULES.md: one function per action, one transaction each."""
