"""`greenlight ci`: the command a CI job runs to register its images, report their checks,
ask for approval and deploy. A client of the public GraphQL API only (over httpx): it
imports nothing of the server, so it works against any Greenlight server it can reach."""
