"""A naive Greenlight: the benchmark's questions answered the way a team would first write
them with Strawberry and Tortoise, without special care (see bench/README.md)."""
