"""Limits that keep one client from hurting everyone: query size and shape (the schema's
extensions), request bodies, mutation rates and live subscriptions per credential."""
