"""Rolling deployments out. The built-in simulator is the default driver."""
