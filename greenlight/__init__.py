"""Greenlight: a GraphQL API that gates continuous deployment behind image approvals."""
