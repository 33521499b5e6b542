"""Strawberry's types of the contract, by domain (nodes, identity, catalog, images, requests,
deployments, audit, emails, chat), their inputs, enums and error codes, and the per-request
loaders. The assembled Schema, over the resolvers, is greenlight.api."""
