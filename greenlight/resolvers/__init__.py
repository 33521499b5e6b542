"""Thin resolvers: arguments in, one workflow call, the result out."""
